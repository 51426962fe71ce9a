import type { ServerHttp2Stream } from 'node:http2';
import { type ChildEvents, type ChildHandle, type OutputType, spawnPipes } from './child.js';
import { type ExitInfo, encodeFrame, encodeJsonFrame, FrameType, type ProcessInfo, type PtySize } from './contract.js';
import { endAndClose } from './http.js';
import type { LaunchPlan } from './launch.js';
import { OutputRing } from './output-ring.js';
import { BACKGROUND_BUFFER_BYTES } from './protocol.js';
import { spawnPty } from './pty-child.js';
import { killGroup } from './signals.js';
import type { Spawner } from './spawner.js';

/**
 * One process started by the agent: its child (pipes or PTY), the response streams attached to it (the one that
 * started it and any `connect`), and for background processes the recent output for later replay.
 *
 * Output goes to every attached stream. When any of them cannot take more (HTTP/2 flow control), reading from
 * the child pauses until all have drained, so a slow client slows the process instead of growing the agent's
 * memory. With nothing attached, output only feeds the ring buffer.
 */
export class ManagedProcess {
  pid = 0;
  readonly startedAt = new Date().toISOString();
  exit: ExitInfo | undefined;
  /** monotonic ms when the process ended; drives pruning */
  endedAt: number | undefined;

  private child: ChildHandle | undefined;
  private readonly sinks = new Set<ServerHttp2Stream>();
  private readonly blocked = new Set<ServerHttp2Stream>();
  private outputPaused = false;
  private readonly ring: OutputRing | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private timedOut = false;

  constructor(
    readonly plan: LaunchPlan,
    private readonly onEnd: (proc: ManagedProcess) => void,
    private readonly spawner?: Spawner,
  ) {
    this.ring = plan.background ? new OutputRing(BACKGROUND_BUFFER_BYTES) : undefined;
  }

  get background(): boolean {
    return this.plan.background;
  }

  /** Spawns the child; rejects with the DenError to report when it cannot start. */
  async start(): Promise<void> {
    const events: ChildEvents = {
      output: (type, chunk) => this.deliver(type, chunk),
      exit: (code, signal) => this.finish(code, signal),
    };
    const { plan } = this;
    this.child = plan.pty ? await spawnPty(plan, plan.pty, events) : await spawnPipes(plan, events, this.spawner);
    this.pid = this.child.pid;
    if (plan.timeoutMs > 0) {
      this.timeoutTimer = setTimeout(() => {
        this.timedOut = true;
        killGroup(this.pid, 'SIGKILL');
      }, plan.timeoutMs);
    }
  }

  info(): ProcessInfo {
    const { plan } = this;
    const info: ProcessInfo = {
      pid: this.pid,
      cmd: plan.argv,
      cwd: plan.cwd,
      user: plan.user.name,
      pty: plan.pty !== undefined,
      background: plan.background,
      startedAt: this.startedAt,
    };
    if (plan.tag !== undefined) info.tag = plan.tag;
    if (this.exit) info.exit = this.exit;
    return info;
  }

  /**
   * Sends this process's output to a response stream from now on, after the buffered output from output frame
   * number `replayFrom` on (0: all of it; undefined: none). A process that already ended gets its EXIT frame right
   * away.
   */
  attach(sink: ServerHttp2Stream, replayFrom: number | undefined): void {
    if (replayFrom !== undefined && this.ring) {
      for (const frame of this.ring.snapshot(replayFrom)) sink.write(frame);
    }
    if (this.exit) {
      endAndClose(sink, encodeJsonFrame(FrameType.EXIT, this.exit));
      return;
    }
    this.sinks.add(sink);
    sink.once('close', () => this.detach(sink));
    if (sink.writableNeedDrain) this.block(sink);
  }

  /** Client input. Returns false when the child's stdin is full; `onDrain` runs when it can take more. */
  writeStdin(data: Uint8Array, onDrain: () => void): boolean {
    if (this.exit || !this.child) return true;
    return this.child.writeStdin(data, onDrain);
  }

  endStdin(): void {
    if (!this.exit) this.child?.endStdin();
  }

  resize(size: PtySize): void {
    if (!this.exit) this.child?.resize(size);
  }

  /** Signals the process group, as a terminal would; false when the process has ended. */
  signal(signal: NodeJS.Signals): boolean {
    if (this.exit) return false;
    return killGroup(this.pid, signal);
  }

  /** The client of a foreground process went away: nothing can read its output or stop it any more. */
  abandon(): void {
    if (!this.exit && !this.plan.background) killGroup(this.pid, 'SIGKILL');
  }

  private deliver(type: OutputType, chunk: Buffer): void {
    const frame = encodeFrame(type, chunk);
    this.ring?.push(frame);
    for (const sink of this.sinks) {
      if (sink.destroyed || sink.writableEnded) {
        this.detach(sink);
        continue;
      }
      if (!sink.write(frame)) this.block(sink);
    }
  }

  private block(sink: ServerHttp2Stream): void {
    if (this.blocked.has(sink)) return;
    this.blocked.add(sink);
    sink.once('drain', () => this.unblock(sink));
    if (!this.outputPaused) {
      this.outputPaused = true;
      this.child?.pause();
    }
  }

  private unblock(sink: ServerHttp2Stream): void {
    this.blocked.delete(sink);
    if (this.blocked.size === 0 && this.outputPaused) {
      this.outputPaused = false;
      this.child?.resume();
    }
  }

  private detach(sink: ServerHttp2Stream): void {
    this.sinks.delete(sink);
    this.unblock(sink);
  }

  private finish(exitCode: number | null, signal: string | null): void {
    clearTimeout(this.timeoutTimer);
    this.exit = { exitCode, signal, timedOut: this.timedOut };
    this.endedAt = performance.now();
    const frame = encodeJsonFrame(FrameType.EXIT, this.exit);
    for (const sink of this.sinks) endAndClose(sink, frame);
    this.sinks.clear();
    this.blocked.clear();
    this.onEnd(this);
  }
}
