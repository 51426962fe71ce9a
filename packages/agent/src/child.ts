import { spawn } from 'node:child_process';
import { DenError, FrameType, type PtySize } from './contract.js';
import type { LaunchPlan } from './launch.js';
import type { PipedProcess, Spawner } from './spawner.js';

export type OutputType = typeof FrameType.STDOUT | typeof FrameType.STDERR;

/** What a running child reports. `exit` comes once, after the last `output`. */
export interface ChildEvents {
  output(type: OutputType, chunk: Buffer): void;
  exit(exitCode: number | null, signal: string | null): void;
}

/** A started child, behind pipes or a PTY. The child leads its own process group (pgid = pid). */
export interface ChildHandle {
  readonly pid: number;
  /** false when the input buffer is full; `onDrain` runs once it empties */
  writeStdin(data: Uint8Array, onDrain: () => void): boolean;
  endStdin(): void;
  resize(size: PtySize): void;
  /** stop reading output (backpressure from slow clients) */
  pause(): void;
  resume(): void;
}

/**
 * How long output may stay silent after the child exited before its pipes are closed anyway: a descendant that
 * inherited them (`sleep 100 &`) would otherwise hold back the exit forever.
 */
const DRAIN_AFTER_EXIT_MS = 100;

/**
 * Starts a child with pipes, as its own session and process group (`detached`), as the plan's user: through the
 * spawner when it runs (spawner.ts: far cheaper inside gVisor), else by forking the agent.
 */
export async function spawnPipes(plan: LaunchPlan, events: ChildEvents, spawner?: Spawner): Promise<ChildHandle> {
  if (spawner?.available) {
    let child: PipedProcess | undefined;
    try {
      child = await spawner.spawn(plan);
    } catch (err) {
      // the helper died meanwhile: fork instead
      if (spawner.available) throw spawnError(err as NodeJS.ErrnoException, plan);
    }
    if (child) return new PipeChild(child, child.pid as number, events);
  }
  const child = spawn(plan.file, plan.argv.slice(1), {
    argv0: plan.argv[0],
    cwd: plan.cwd,
    env: plan.env,
    uid: plan.user.uid,
    gid: plan.user.gid,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) {
    // The spawn failed; Node reports why in the 'error' event on the next tick.
    return new Promise((_, reject) => child.once('error', (err) => reject(spawnError(err, plan))));
  }
  return new PipeChild(child, child.pid, events);
}

class PipeChild implements ChildHandle {
  private openOutputs = 2;
  private exited: { code: number | null; signal: string | null } | undefined;
  private finished = false;
  private paused = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private readonly drainWaiters = new Set<() => void>();

  constructor(
    private readonly child: PipedProcess,
    readonly pid: number,
    private readonly events: ChildEvents,
  ) {
    child.stdin.on('error', () => {
      // EPIPE once the child closed its stdin: input it no longer reads is dropped.
    });
    this.watch(child.stdout, FrameType.STDOUT);
    this.watch(child.stderr, FrameType.STDERR);
    child.on('error', () => {
      // Failures of kill() after the spawn; the exit event still follows.
    });
    child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      this.armDrainTimer();
      this.maybeFinish();
    });
  }

  private watch(stream: NodeJS.ReadableStream & { destroyed: boolean }, type: OutputType): void {
    let closed = false;
    const done = (): void => {
      if (closed) return;
      closed = true;
      this.openOutputs--;
      this.maybeFinish();
    };
    stream.on('data', (chunk: Buffer) => {
      this.events.output(type, chunk);
      if (this.exited) this.armDrainTimer();
    });
    stream.on('end', done);
    stream.on('close', done);
    stream.on('error', done);
  }

  private armDrainTimer(): void {
    clearTimeout(this.drainTimer);
    if (this.paused || this.finished) return;
    this.drainTimer = setTimeout(() => {
      this.child.stdout.destroy();
      this.child.stderr.destroy();
    }, DRAIN_AFTER_EXIT_MS);
  }

  private maybeFinish(): void {
    if (this.finished || !this.exited || this.openOutputs > 0) return;
    this.finished = true;
    clearTimeout(this.drainTimer);
    this.child.stdin.destroy();
    // Writers waiting for stdin to drain go on; what they still send is dropped.
    const waiters = [...this.drainWaiters];
    this.drainWaiters.clear();
    for (const resume of waiters) resume();
    this.events.exit(this.exited.code, this.exited.signal);
  }

  writeStdin(data: Uint8Array, onDrain: () => void): boolean {
    const stdin = this.child.stdin;
    if (stdin.destroyed || stdin.writableEnded) return true;
    if (stdin.write(data)) return true;
    // One 'drain' listener however many writers wait (the opener, connects, the stdin endpoint).
    if (this.drainWaiters.size === 0) {
      stdin.once('drain', () => {
        const waiters = [...this.drainWaiters];
        this.drainWaiters.clear();
        for (const resume of waiters) resume();
      });
    }
    this.drainWaiters.add(onDrain);
    return false;
  }

  endStdin(): void {
    if (!this.child.stdin.writableEnded) this.child.stdin.end();
  }

  resize(): void {
    // Pipes have no window size.
  }

  pause(): void {
    this.paused = true;
    clearTimeout(this.drainTimer);
    this.child.stdout.pause();
    this.child.stderr.pause();
  }

  resume(): void {
    this.paused = false;
    this.child.stdout.resume();
    this.child.stderr.resume();
    if (this.exited) this.armDrainTimer();
  }
}

function spawnError(err: NodeJS.ErrnoException, plan: LaunchPlan): DenError {
  const name = plan.argv[0];
  switch (err.code) {
    case 'ENOENT':
      return new DenError('EXECUTABLE_NOT_FOUND', `executable not found in the sandbox: ${name} (${plan.file})`);
    case 'EACCES':
      return new DenError(
        'EXECUTABLE_NOT_FOUND',
        `${plan.file} is not executable by user '${plan.user.name}' (or its cwd ${plan.cwd} is not accessible)`,
      );
    case 'ENOEXEC':
      return new DenError('EXECUTABLE_NOT_FOUND', `${plan.file} is not a valid executable (add a #! line to a script)`);
    case 'EPERM':
      return new DenError(
        'PERMISSION_DENIED',
        `the agent may not start processes as user '${plan.user.name}' (${err.message})`,
      );
    case 'EAGAIN':
    case 'ENOMEM':
      // fork fails with EAGAIN at RLIMIT_NPROC / the pids cgroup limit (a fork bomb), ENOMEM at the memory limit.
      return new DenError(
        'RESOURCE_EXHAUSTED',
        `cannot start ${name}: the sandbox reached its ${err.code === 'EAGAIN' ? 'process' : 'memory'} limit; end some of its processes (or create it with a larger --${err.code === 'EAGAIN' ? 'pids' : 'memory'})`,
      );
    default:
      return new DenError('INTERNAL', `starting ${name} failed: ${err.message}`);
  }
}
