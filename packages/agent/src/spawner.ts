import { type ChildProcessByStdio, type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { LaunchPlan } from './launch.js';

/**
 * The agent's side of den-spawn (native/den-spawn.c), a small static helper that starts pipe processes with vfork
 * instead of forking the agent's Node process: inside gVisor that fork is most of an exec's cost (RUNTIME-NOTES,
 * agent README). The helper is started once; each spawn is a request on its stdin plus three Unix socket
 * connections that become the child's stdin, stdout and stderr (Node's own spawn also gives children socketpairs).
 *
 * `spawn` resolves with an object shaped like Node's ChildProcess as far as PipeChild uses it (three streams and
 * 'exit'), so both ways of starting a process share one implementation of output, backpressure and exit handling.
 */

/** What PipeChild needs of a started child. */
export interface PipedProcess {
  readonly pid?: number | undefined;
  readonly stdin: ChildProcessWithoutNullStreams['stdin'];
  readonly stdout: ChildProcessWithoutNullStreams['stdout'];
  readonly stderr: ChildProcessWithoutNullStreams['stderr'];
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

const EVENT_BYTES = 12;
enum Event {
  Ready = 0,
  Started = 1,
  Failed = 2,
  Exited = 3,
}
const CANCEL = 0xffffffff;
const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);
const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** What den-spawn needs to start a process: the rest of a LaunchPlan is the agent's own business. */
export type SpawnRequest = Pick<LaunchPlan, 'file' | 'argv' | 'cwd' | 'env'> & { user: { uid: number; gid: number } };

interface Waiting {
  resolve(pid: number): void;
  reject(err: NodeJS.ErrnoException): void;
}

class SpawnedProcess extends EventEmitter implements PipedProcess {
  constructor(
    readonly pid: number,
    readonly stdin: Socket,
    readonly stdout: Socket,
    readonly stderr: Socket,
  ) {
    super();
  }
}

export class Spawner {
  private nextId = 1;
  private ready = false;
  private dead = false;
  private pending: Buffer = Buffer.alloc(0);
  private readonly waiting = new Map<number, Waiting>();
  private readonly readyWaiters: { resolve(): void; reject(err: Error): void }[] = [];
  private readonly running = new Map<number, SpawnedProcess>();
  /** exits that arrived before the process object was made (the child ended at once) */
  private readonly earlyExits = new Map<number, number>();

  private constructor(
    private readonly helper: ChildProcessByStdio<Writable, Readable, null>,
    private readonly socketPath: string,
    /** who uses the helper, for the one line logged if it dies */
    private readonly owner: string,
  ) {
    helper.stdout.on('data', (chunk: Buffer) => this.onEvents(chunk));
    helper.stdin.on('error', () => undefined);
    helper.on('error', (err) => this.die(`den-spawn failed: ${err.message}`));
    helper.on('exit', (code, signal) => this.die(`den-spawn exited (${signal ?? code})`));
  }

  /**
   * Starts the helper; undefined when there is none (agent tests on the host without it). `runDir` must be a
   * directory only root can enter: whoever connects to the socket could take over a pending child's stdio.
   */
  static start(binary: string | undefined, runDir: string, owner = 'den-agent'): Spawner | undefined {
    if (!binary || !existsSync(binary)) return undefined;
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    const socketPath = join(runDir, 'spawn.sock');
    // Own session: tini forwards signals to the agent's process group, and the helper must outlive the agent's
    // children on a SIGTERM to report their exits. It ends when its stdin closes, that is with the agent.
    const helper = spawn(binary, [socketPath], { stdio: ['pipe', 'pipe', 'inherit'], detached: true, env: {} });
    return new Spawner(helper, socketPath, owner);
  }

  /**
   * The helper no longer keeps the owner's process alive (the daemon uses one for its whole life and exits when its
   * own work is done); running children still do, through their stdio connections.
   */
  unref(): this {
    this.helper.unref();
    (this.helper.stdin as Partial<Socket>).unref?.();
    (this.helper.stdout as Partial<Socket>).unref?.();
    return this;
  }

  /** False once the helper died: the agent forks itself from then on. */
  get available(): boolean {
    return !this.dead;
  }

  /** Resolves once the helper listens (at once when it does), or rejects when it died first. */
  private whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.dead) return Promise.reject(Object.assign(new Error('den-spawn is not running'), { code: 'EAGAIN' }));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  async spawn(plan: SpawnRequest): Promise<PipedProcess> {
    // The helper is started as the agent starts: the first request may come before it listens (a few ms, far less
    // than forking the agent instead).
    await this.whenReady();
    const id = this.nextId++;
    const streams = [0, 1, 2].map((which) => this.stream(id, which)) as [Socket, Socket, Socket];
    const started = new Promise<number>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.helper.stdin.write(encodeRequest(id, plan));
    let pid: number;
    try {
      pid = await started;
    } catch (err) {
      for (const s of streams) s.destroy();
      throw err;
    }
    const [stdin, stdout, stderr] = streams;
    // The child's stdin is only written to; reading it would turn its end into 'end' and close our side early.
    stdin.pause();
    const child = new SpawnedProcess(pid, stdin, stdout, stderr);
    this.running.set(pid, child);
    const early = this.earlyExits.get(pid);
    if (early !== undefined) {
      // Started and exited came in one read: report the exit once the caller has its listeners on the child.
      this.earlyExits.delete(pid);
      setImmediate(() => this.exited(pid, early));
    }
    return child;
  }

  private stream(id: number, which: number): Socket {
    const socket = connect(this.socketPath);
    const header = Buffer.alloc(8);
    header.writeUInt32LE(id, 0);
    header.writeUInt32LE(which, 4);
    socket.write(header);
    socket.on('error', (err) => {
      // A connection that failed before the start: the request is cancelled and the spawn rejected.
      const w = this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id);
      const cancel = Buffer.alloc(12);
      cancel.writeUInt32LE(8, 0);
      cancel.writeUInt32LE(id, 4);
      cancel.writeUInt32LE(CANCEL, 8);
      this.helper.stdin.write(cancel);
      w.reject(err);
    });
    return socket;
  }

  private onEvents(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let off = 0;
    for (; off + EVENT_BYTES <= this.pending.length; off += EVENT_BYTES) {
      const kind = this.pending.readUInt32LE(off);
      const id = this.pending.readUInt32LE(off + 4);
      const value = this.pending.readInt32LE(off + 8);
      if (kind === Event.Ready) {
        this.ready = true;
        for (const w of this.readyWaiters.splice(0)) w.resolve();
      } else if (kind === Event.Started || kind === Event.Failed) {
        const w = this.waiting.get(id);
        this.waiting.delete(id);
        if (kind === Event.Started) w?.resolve(value);
        else w?.reject(errnoError(value));
      } else if (kind === Event.Exited) {
        if (this.running.has(id)) this.exited(id, value);
        else this.earlyExits.set(id, value);
      }
    }
    this.pending = this.pending.subarray(off);
  }

  /** Decodes a wait status the way Node reports a child's end: an exit code, or the signal that killed it. */
  private exited(pid: number, status: number): void {
    const child = this.running.get(pid);
    if (!child) return;
    this.running.delete(pid);
    const termSig = status & 0x7f;
    if (termSig === 0) child.emit('exit', (status >> 8) & 0xff, null);
    else child.emit('exit', null, signalNames.get(termSig) ?? null);
  }

  /**
   * The helper is gone (a bug, or the sandbox is ending): pending spawns fail and new ones fork the agent. Its
   * running children were reparented to tini, so their exit status is lost; they are reported as ended once
   * their output closes.
   */
  private die(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    console.error(`${this.owner}: ${reason}; starting processes with Node's spawn from now on`);
    const err = Object.assign(new Error(reason), { code: 'EAGAIN' });
    for (const w of this.readyWaiters.splice(0)) w.reject(err);
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
    for (const [pid, child] of this.running) {
      this.running.delete(pid);
      child.emit('exit', null, null);
    }
  }
}

function errnoError(errno: number): NodeJS.ErrnoException {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`spawn failed: ${code}`), { code, errno: -errno });
}

/** len, id, uid, gid, argc, envc, then NUL-terminated file, cwd, argv..., env... (den-spawn.c) */
function encodeRequest(id: number, plan: SpawnRequest): Buffer {
  const env = Object.entries(plan.env).map(([k, v]) => `${k}=${v}`);
  const strings = Buffer.from(`${[plan.file, plan.cwd, ...plan.argv, ...env].join('\0')}\0`);
  const head = Buffer.alloc(24);
  head.writeUInt32LE(20 + strings.length, 0);
  head.writeUInt32LE(id, 4);
  head.writeUInt32LE(plan.user.uid, 8);
  head.writeUInt32LE(plan.user.gid, 12);
  head.writeUInt32LE(plan.argv.length, 16);
  head.writeUInt32LE(env.length, 20);
  return Buffer.concat([head, strings]);
}
