import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The raw baseline: the runtime binary driven directly (`create`/`start`/`exec`/`kill`/`delete`, and on runsc
 * `checkpoint`/`restore`) on an overlay of the base image's root with a tmpfs /tmp, running `sleep infinity` unless
 * told otherwise. No den, no agent, no disk file, no network.
 */
export class RawRuntime {
  private readonly mounts: string[] = [];

  private constructor(
    readonly name: 'runsc' | 'runc',
    private readonly binary: string,
    private readonly dir: string,
    private readonly rootfs: string,
  ) {}

  static async create(name: 'runsc' | 'runc', binary: string, rootfs: string): Promise<RawRuntime> {
    const dir = await mkdtemp(join(tmpdir(), `den-bench-raw-${name}-`));
    return new RawRuntime(name, binary, dir, rootfs);
  }

  private args(...rest: string[]): string[] {
    const global = ['--root', join(this.dir, 'state')];
    // --overlay2=none: writes go to the host overlay through the gofer, as in den (not to a sentry-memory overlay)
    if (this.name === 'runsc') global.push('--network=none', '--overlay2=none');
    return [...global, ...rest];
  }

  private async bundle(id: string, args: string[]): Promise<string> {
    const bundle = join(this.dir, id);
    await mkdir(bundle, { recursive: true });
    // `runc spec` writes the reference default spec; both runtimes accept it.
    await run('runc', ['spec', '--bundle', bundle]);
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    spec.process.terminal = false;
    spec.process.args = args;
    // A writable overlay of the image's layer, like den's root but without den's disk file: the raw container
    // writes through the same runtime file path (gVisor's gofer) as a den sandbox does.
    const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => join(bundle, d)) as [string, string, string];
    for (const d of [upper, work, merged]) await mkdir(d, { recursive: true });
    await run('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${this.rootfs},upperdir=${upper},workdir=${work}`,
      merged,
    ]);
    this.mounts.push(merged);
    spec.root = { path: merged, readonly: false };
    spec.hostname = id;
    // its own cgroup, so the benchmark can find all of its host processes (memory.ts)
    spec.linux.cgroupsPath = this.cgroupPath(id);
    spec.mounts.push({
      destination: '/tmp',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'size=512m'],
    });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    return bundle;
  }

  cgroupPath(id: string): string {
    return `/den-bench/${id}`;
  }

  /** create + start, detached; the container's stdio is /dev/null (a pipe would be held open by the container) */
  async start(id: string, args = ['sleep', 'infinity']): Promise<void> {
    const bundle = await this.bundle(id, args);
    await this.detached('create', '--bundle', bundle, id);
    await run(this.binary, this.args('start', id), { timeout: 60_000 });
  }

  /** runsc: saves the container's memory as den does (uncompressed), which stops it (`delete` it before `restore`). */
  async checkpoint(id: string, imageDir: string): Promise<void> {
    await run(this.binary, this.args('checkpoint', '--compression', 'none', '--image-path', imageDir, id));
  }

  /** runsc: the container again, from the image `checkpoint` wrote, in its bundle of `start`. */
  async restore(id: string, imageDir: string): Promise<void> {
    await this.detached('restore', '--detach', '--image-path', imageDir, '--bundle', join(this.dir, id), id);
  }

  private detached(...args: string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const child = spawn(this.binary, this.args(...args), { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`${this.name} ${args[0]} exited ${code}`)),
      );
    });
  }

  async exec(id: string, cmd: string[], stdin?: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, this.args('exec', id, ...cmd), { stdio: ['pipe', 'pipe', 'inherit'] });
      const out: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`exec exited ${code}`)),
      );
      child.stdin.on('error', () => undefined); // the command may exit before reading everything
      child.stdin.end(stdin);
    });
  }

  /** SIGKILL, then wait until the container's init process has exited (a zombie counts as exited) */
  async stop(id: string): Promise<void> {
    const { stdout } = await run(this.binary, this.args('state', id));
    const pid = (JSON.parse(stdout) as { pid: number }).pid;
    await run(this.binary, this.args('kill', id, 'KILL'));
    while (await running(pid)) await new Promise((r) => setTimeout(r, 5));
  }

  async delete(id: string): Promise<void> {
    await run(this.binary, this.args('delete', '--force', id), { timeout: 60_000 });
  }

  async cleanup(): Promise<void> {
    const { stdout } = await run(this.binary, this.args('list', '--quiet')).catch(() => ({ stdout: '' }));
    for (const id of stdout.split('\n').filter(Boolean)) await this.delete(id).catch(() => undefined);
    for (const m of this.mounts) await run('umount', [m]).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    // the runtimes remove each container's cgroup; the parent they created stays behind (empty)
    for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      await rmdir(join('/sys/fs/cgroup', hierarchy, 'den-bench')).catch(() => undefined);
    }
    await rmdir('/sys/fs/cgroup/den-bench').catch(() => undefined);
  }
}

async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}
