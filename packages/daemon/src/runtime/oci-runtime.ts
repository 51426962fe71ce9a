import { constants } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DenError, isSandboxId } from '@den/shared';
import type {
  ContainerConfig,
  ContainerState,
  ContainerStatus,
  ExecResult,
  Runtime,
  RuntimeName,
} from '../services/ports.js';
import { cgroupProcs, destroyCgroup, isAlive } from './cgroups.js';
import { buildSpec, cgroupPath } from './oci-spec.js';
import { describeExit, runBinary, runtimeFailed, spawnBinary } from './run-binary.js';

export interface OciRuntimeOptions {
  /** path of the runtime binary */
  binary: string;
  /** den's own state root for this runtime (`--root`); never the runtime's default root */
  root: string;
}

/** Timeouts per subcommand; `delete` of runsc alone takes ~1.5 s (RUNTIME-NOTES). */
const TIMEOUT_MS = {
  version: 10_000,
  create: 60_000,
  start: 30_000,
  query: 15_000,
  kill: 15_000,
  delete: 60_000,
  exec: 300_000,
};

interface RawState {
  id?: unknown;
  pid?: unknown;
  status?: unknown;
}

const STATUSES: Record<string, ContainerStatus> = {
  creating: 'created',
  created: 'created',
  running: 'running',
  pausing: 'paused',
  paused: 'paused',
  stopped: 'stopped',
};

/**
 * What runc and runsc share: both are OCI runtimes driven through the same CLI verbs (create, start, state, list,
 * kill, delete, exec) with a private `--root`. Subclasses add their global flags and post-create steps.
 */
export abstract class OciRuntime implements Runtime {
  abstract readonly name: RuntimeName;
  protected readonly binary: string;
  readonly root: string;

  constructor(options: OciRuntimeOptions) {
    this.binary = options.binary;
    this.root = options.root;
  }

  /** Flags placed before every subcommand. runsc does not remember them after `create`, so they go on every call. */
  protected abstract globalArgs(): string[];

  /** How `create` and `start` are run (runsc wraps them; see there). */
  protected createCommand(args: string[]): { binary: string; args: string[] } {
    return { binary: this.binary, args };
  }

  /** Runs between `create` and `start`, with the host pid the runtime wrote to the pid file. */
  protected async afterCreate(_config: ContainerConfig, _pid: number): Promise<void> {}

  /**
   * Whether `run --detach` may replace `create` + `start` (nothing has to happen between them): one runtime
   * process instead of two. Measured with runsc on the den hosts: 238 ms instead of 322 (median of 6).
   */
  protected runsInOneStep(_config: ContainerConfig): boolean {
    return false;
  }

  protected invoke(subcommandArgs: string[], timeoutMs: number) {
    return runBinary(this.binary, [...this.globalArgs(), ...subcommandArgs], { runtime: this.name, timeoutMs });
  }

  async version(): Promise<string> {
    const { stdout } = await runBinary(this.binary, ['--version'], {
      runtime: this.name,
      timeoutMs: TIMEOUT_MS.version,
    });
    return stdout.split('\n')[0]?.trim() ?? '';
  }

  readonly canCheckpoint: boolean = false;

  async checkpoint(id: string, _imageDir: string): Promise<void> {
    throw new DenError('RUNTIME_FAILED', `${this.name} cannot checkpoint container ${id}: not supported`);
  }

  async run(config: ContainerConfig, opts: { restoreFrom?: string; removed?: boolean } = {}): Promise<void> {
    checkId(config.id);
    // Idempotent for the reconcile loop: a running container is left alone; anything else under this id (a
    // container created before a crash, one that stopped) is removed and made again from the current config.
    // `removed`: the caller has just deleted the container, so the check (a runtime invocation) is skipped.
    const existing = opts.removed ? undefined : await this.state(config.id);
    if (existing?.status === 'running') return;
    if (existing) await this.delete(config.id);

    await mkdir(config.bundleDir, { recursive: true });
    await mkdir(config.socketDir, { recursive: true });
    await this.prepareRootfs(config);
    // A socket file left by the previous run would accept no connections and confuse readiness checks.
    await unlink(join(config.socketDir, 'agent.sock')).catch(() => undefined);
    const spec = buildSpec(config, this.name, { hostNofileHard: await hostNofileHard() });
    const specFile = join(config.bundleDir, 'config.json');
    await writeFile(`${specFile}.tmp`, `${JSON.stringify(spec, null, 2)}\n`);
    await rename(`${specFile}.tmp`, specFile);
    const pidFile = join(config.bundleDir, 'init.pid');
    await rm(pidFile, { force: true });

    const log = await open(config.logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    const logStart = (await log.stat()).size;
    try {
      // A restore creates and starts the container from the image in one step (`runsc restore --detach`), and so
      // does `run --detach` when nothing has to happen between create and start.
      const oneStep = !opts.restoreFrom && this.runsInOneStep(config);
      const verb = opts.restoreFrom
        ? ['restore', '--detach', '--image-path', opts.restoreFrom]
        : oneStep
          ? ['run', '--detach']
          : ['create'];
      const create = this.createCommand([
        ...this.globalArgs(),
        ...verb,
        '--bundle',
        config.bundleDir,
        '--pid-file',
        pidFile,
        config.id,
      ]);
      const exit = await spawnBinary(create.binary, create.args, {
        runtime: this.name,
        timeoutMs: TIMEOUT_MS.create,
        outputFd: log.fd,
      });
      if (exit.code !== 0) {
        // The runtime's stderr was the log file (the container inherits it); its error is the log's new tail.
        const tail = await readTail(config.logFile, logStart);
        // `run --detach` is reported as the create it stands for
        const step = opts.restoreFrom ? 'restore' : 'create';
        throw runtimeFailed(this.name, step, describeExit({ ...exit, stderr: tail }, TIMEOUT_MS.create), {
          exitCode: exit.code,
        });
      }
      const pid = Number.parseInt(await readFile(pidFile, 'utf8'), 10);
      if (!(pid > 0)) throw runtimeFailed(this.name, 'create', `no pid in ${pidFile}`);
      if (!opts.restoreFrom && !oneStep) {
        await this.afterCreate(config, pid);
        const start = this.createCommand([...this.globalArgs(), 'start', config.id]);
        await runBinary(start.binary, start.args, { runtime: this.name, timeoutMs: TIMEOUT_MS.start });
      }
    } catch (err) {
      await this.delete(config.id).catch(() => undefined);
      throw err;
    } finally {
      await log.close();
    }
  }

  /** Directories the spec's mounts need inside the root filesystem. */
  protected async prepareRootfs(config: ContainerConfig): Promise<void> {
    try {
      if (!(await stat(config.rootfsDir)).isDirectory()) throw new Error('not a directory');
    } catch {
      throw new DenError('RUNTIME_FAILED', `${this.name}: root filesystem ${config.rootfsDir} is not mounted`);
    }
  }

  async state(id: string): Promise<ContainerState | undefined> {
    checkId(id);
    const exit = await spawnBinary(this.binary, [...this.globalArgs(), 'state', id], {
      runtime: this.name,
      timeoutMs: TIMEOUT_MS.query,
    });
    if (exit.code !== 0) {
      if (/does not exist|not found|no such file/i.test(exit.stderr + exit.stdout)) return undefined;
      throw runtimeFailed(this.name, 'state', describeExit(exit, TIMEOUT_MS.query));
    }
    return this.toState(parseJson(exit.stdout, this.name, 'state') as RawState);
  }

  async list(): Promise<ContainerState[]> {
    const { stdout } = await this.invoke(['list', '--format', 'json'], TIMEOUT_MS.query);
    const raw = parseJson(stdout, this.name, 'list');
    if (raw === null) return [];
    if (!Array.isArray(raw)) throw runtimeFailed(this.name, 'list', `unexpected output: ${stdout.slice(0, 200)}`);
    return Promise.all(raw.map((r) => this.toState(r as RawState)));
  }

  /**
   * Both runtimes trust their state file: runsc keeps reporting "running" after the host OOM killer has killed the
   * sandbox process. A container whose init is gone is reported as stopped.
   */
  private async toState(raw: RawState): Promise<ContainerState> {
    const id = String(raw.id ?? '');
    let status = STATUSES[String(raw.status)] ?? 'stopped';
    let pid = typeof raw.pid === 'number' ? raw.pid : 0;
    if (status !== 'stopped' && !(await isAlive(pid))) status = 'stopped';
    if (status === 'stopped') pid = 0;
    return { id, status, pid };
  }

  async freeze(id: string): Promise<void> {
    checkId(id);
    await this.invoke(['pause', id], TIMEOUT_MS.kill);
  }

  async thaw(id: string): Promise<void> {
    checkId(id);
    await this.invoke(['resume', id], TIMEOUT_MS.kill);
  }

  async kill(id: string, signal = 'SIGKILL'): Promise<void> {
    checkId(id);
    // The runtime is asked for the state only when the signal could not be sent (each call spawns the runtime).
    try {
      await this.invoke(['kill', id, signal], TIMEOUT_MS.kill);
    } catch (err) {
      const now = await this.state(id);
      if (!now || now.status === 'stopped') return;
      throw err;
    }
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    let failure: unknown;
    if (await this.state(id).catch(() => ({ id, status: 'stopped' as const, pid: 0 }))) {
      try {
        await this.invoke(['delete', '--force', id], TIMEOUT_MS.delete);
      } catch (err) {
        failure = err;
      }
    }
    // Whatever the runtime did, nothing of the container may remain: processes, cgroups, state files.
    await destroyCgroup(cgroupPath(id));
    await this.removeStateFiles(id);
    if (failure && (await this.state(id).catch(() => undefined))) throw failure;
  }

  /**
   * Removes the runtime's state for `id` when its own `delete` could not (its state was broken). runc keeps a
   * directory `<id>`; runsc keeps `<id>_sandbox:<id>.state`, `.lock` and a control socket `runsc-<id>.sock`. Ids are
   * fixed-length random strings, so a name containing one belongs to that container.
   */
  protected async removeStateFiles(id: string): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.root);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.includes(id)) await rm(join(this.root, e), { recursive: true, force: true });
    }
  }

  async exec(id: string, args: string[]): Promise<ExecResult> {
    checkId(id);
    const st = await this.state(id);
    if (st?.status !== 'running') {
      throw new DenError('RUNTIME_FAILED', `${this.name} exec: container ${id} is ${st?.status ?? 'unknown'}`);
    }
    const exit = await spawnBinary(this.binary, [...this.globalArgs(), 'exec', id, ...args], {
      runtime: this.name,
      timeoutMs: TIMEOUT_MS.exec,
    });
    if (exit.timedOut) throw runtimeFailed(this.name, 'exec', describeExit(exit, TIMEOUT_MS.exec));
    return { exitCode: exit.code, stdout: exit.stdout, stderr: exit.stderr };
  }

  /** Host pids of every process of the container (sandbox, gofer, stubs for runsc; init and children for runc). */
  async hostPids(id: string): Promise<number[]> {
    checkId(id);
    return cgroupProcs(cgroupPath(id));
  }
}

/** Runtime ids must be den sandbox ids: fixed length, because runsc matches container ids by prefix. */
function checkId(id: string): void {
  if (!isSandboxId(id)) {
    throw new DenError('INVALID_ARGUMENT', `container id ${JSON.stringify(id)} is not a sandbox id (20 of [a-z0-9])`);
  }
}

function parseJson(text: string, runtime: string, subcommand: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw runtimeFailed(runtime, subcommand, `output is not JSON: ${text.slice(0, 200)}`);
  }
}

async function readTail(file: string, from: number, max = 4000): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(from, size - max);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** The daemon's RLIMIT_NOFILE hard limit, from /proc/self/limits ("Max open files  <soft>  <hard>  files"). */
async function hostNofileHard(): Promise<number | undefined> {
  try {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(await readFile('/proc/self/limits', 'utf8'));
    if (!m?.[1] || m[1] === 'unlimited') return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Creates `dir` inside a root filesystem with `mode` (used for /tmp, which must be 1777 like a fresh /tmp). */
export async function ensureDir(dir: string, mode: number): Promise<void> {
  try {
    await mkdir(dir, { mode });
    await chmod(dir, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}
