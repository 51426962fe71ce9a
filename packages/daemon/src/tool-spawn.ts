import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type PipedProcess, Spawner } from '@den/agent/spawner';

/**
 * How the daemon starts the tools and runtime binaries it runs (ip, nft, mount, runc, runsc, ...).
 *
 * Node's spawn forks the daemon's whole process, synchronously: measured on a 2-core VM, 6 ms per process from a
 * 90 MB Node process and 20 ms from a 270 MB one, with the event loop blocked meanwhile, so steps meant to run side
 * by side (a create's disk and network) wait for each other's forks. den-spawn (packages/agent/native/den-spawn.c),
 * the static vfork helper the agent uses inside sandboxes, starts a process for ~2.5 ms from its own ~1 MB process.
 * The daemon starts one helper for its whole life (`startToolSpawner`); `startTool` uses it while it runs, and
 * Node's spawn otherwise (den-spawn not built, the helper died, or a caller that hands an open descriptor to the
 * child, which den-spawn cannot pass).
 *
 * Measured A/B with `DEN_BENCH_SUITES=core DEN_BENCH_N=0.5` (same VM, same hour), p50 with den-spawn vs Node spawn:
 * runc create to first exec 258-274 vs 292 ms (raw 200-218), stop 163-167 vs 224, delete 207-214 vs 262.
 *
 * Either way the child gets its own session (den-spawn always does that), the given environment and the daemon's
 * working directory.
 */

/** How a tool ended and what it printed (`runTool`). */
export interface ToolExit {
  /** exit code; -1 when killed by a signal (see `signal`) */
  code: number;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export interface RunToolOptions {
  /** kill the tool (SIGKILL to its pid only, never its group) after this long */
  timeoutMs: number;
  /** written to the tool's stdin (`ip -batch -`, `nft -f -`); without it stdin is empty */
  input?: string;
  /** a host descriptor used as stdout and stderr instead of pipes (output is then not captured) */
  outputFd?: number;
  /** characters of stdout and of stderr kept at most; default all */
  maxCapture?: number;
}

/**
 * Runs a tool with an argv array (never a shell), in `C` locale, and resolves with how it ended, whatever the exit
 * code. Rejects, as Node's spawn does (an error with `code`, e.g. ENOENT), only when it cannot be started.
 */
export async function runTool(binary: string, args: string[], options: RunToolOptions): Promise<ToolExit> {
  const { timeoutMs, input, outputFd, maxCapture = Number.POSITIVE_INFINITY } = options;
  const child = await startTool(binary, args, {
    env: { ...process.env, LC_ALL: 'C' } as Record<string, string>,
    stdin: input === undefined ? 'ignore' : 'pipe',
    ...(outputFd !== undefined ? { outputFd } : {}),
  });
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < maxCapture) stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < maxCapture) stderr += d;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, signal, timedOut, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** What runTool uses of a started tool: the part of Node's ChildProcess it relies on. */
interface ToolProcess {
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal: NodeJS.Signals): void;
  on(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

interface ToolOptions {
  env: Record<string, string>;
  /** 'pipe' to write the tool's stdin; 'ignore' gives it an empty one */
  stdin: 'pipe' | 'ignore';
  /** a host descriptor used as stdout and stderr instead of pipes (Node's spawn only) */
  outputFd?: number;
}

/** den-spawn as built next to the agent's compiled code (scripts/bundle-agent.mjs). */
const HELPER_BINARY = fileURLToPath(new URL('../den-spawn', import.meta.resolve('@den/agent/spawner')));

let helper: Spawner | undefined;

/**
 * Starts den-spawn for this process (once; later calls keep the first). `runDir` must be a directory only root can
 * enter (its socket hands out the stdio of pending children); false when there is no helper to start.
 */
export function startToolSpawner(runDir: string, binary = HELPER_BINARY): boolean {
  if (!helper?.available) helper = Spawner.start(binary, runDir, 'den daemon')?.unref();
  return helper !== undefined;
}

/** Starts a tool; rejects like Node's spawn does (an error with `code`, e.g. ENOENT) when it cannot be started. */
async function startTool(binary: string, args: string[], options: ToolOptions): Promise<ToolProcess> {
  if (!helper?.available || options.outputFd !== undefined) return nodeSpawn(binary, args, options);
  const file = onPath(binary, options.env.PATH ?? process.env.PATH ?? '');
  const user = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  // The helper's pipes do not keep the process alive (unref), and the child's start and exit come through them: this
  // timer does, from the request to the child's 'close' (runTool's own timeout runs only once the child started).
  const hold = setInterval(() => undefined, 60_000);
  let child: PipedProcess;
  try {
    child = await helper.spawn({ file, argv: [binary, ...args], cwd: process.cwd(), env: options.env, user });
  } catch (err) {
    clearInterval(hold);
    throw err;
  }
  if (options.stdin === 'ignore') child.stdin.end();
  const tool = new HelperProcess(child);
  tool.on('close', () => clearInterval(hold));
  return tool;
}

function nodeSpawn(binary: string, args: string[], options: ToolOptions): Promise<ToolProcess> {
  const out = options.outputFd;
  const child: ChildProcess = spawn(binary, args, {
    detached: true,
    env: options.env,
    stdio: [options.stdin, out ?? 'pipe', out ?? 'pipe'],
  });
  // Node reports a binary that cannot be started as an 'error' event after the call; callers get a rejection.
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => {
      child.off('error', reject);
      // Later errors (a kill of an ended process) change nothing: 'close' follows.
      child.on('error', () => undefined);
      resolve(child as ToolProcess);
    });
  });
}

/**
 * A child started by den-spawn, shaped like Node's ChildProcess: 'close' once it exited and its output ended
 * (Node's order), kill by pid.
 */
class HelperProcess extends EventEmitter implements ToolProcess {
  constructor(private readonly child: PipedProcess) {
    super();
    let exit: [number | null, NodeJS.Signals | null] | undefined;
    let open = 2;
    const maybeClose = () => {
      if (exit && open === 0) this.emit('close', ...exit);
    };
    for (const stream of [child.stdout, child.stderr]) {
      stream.once('close', () => {
        open--;
        maybeClose();
      });
    }
    child.on('exit', (code, signal) => {
      exit = [code, signal];
      maybeClose();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
  get stdin(): Writable {
    return this.child.stdin;
  }
  get stdout(): Readable {
    return this.child.stdout;
  }
  get stderr(): Readable {
    return this.child.stderr;
  }

  kill(signal: NodeJS.Signals): void {
    try {
      if (this.child.pid) process.kill(this.child.pid, signal);
    } catch {
      // already gone
    }
  }
}

/** The executable `binary` names, found through PATH as execvp would (den-spawn execs an absolute path). */
function onPath(binary: string, path: string): string {
  if (binary.includes('/')) return binary;
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, binary);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  throw Object.assign(new Error(`spawn ${binary} ENOENT`), { code: 'ENOENT', errno: -2, path: binary });
}
