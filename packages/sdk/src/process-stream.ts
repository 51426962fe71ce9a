import {
  DenError,
  decodeJson,
  type ExitInfo,
  encodeFrame,
  encodeJsonFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  type PtySize,
} from '@den/shared';
import type WebSocket from 'ws';
import { errorFromBody } from './errors.js';

/** How a command's output reaches the caller. */
export interface OutputOptions {
  /** called with each piece of stdout, decoded as UTF-8 (a character split across chunks is held back whole) */
  onStdout?(data: string): void;
  /** called with each piece of stderr, decoded as UTF-8 */
  onStderr?(data: string): void;
  /** called with each raw stdout chunk, for binary output */
  onStdoutBytes?(data: Uint8Array): void;
  /** called with each raw stderr chunk */
  onStderrBytes?(data: Uint8Array): void;
  /**
   * Keep the whole output in `CommandResult.stdout` / `stderr` (default true). Pass false for long or endless
   * output that the callbacks already handle, so memory stays flat; the result's strings are then empty.
   */
  collectOutput?: boolean;
}

/** How a command ended, with its collected output. Returned for every exit status; a non-zero exit is no error. */
export interface CommandResult extends ExitInfo {
  /** exit code, or null when a signal killed the process */
  exitCode: number | null;
  /** the signal that killed the process, e.g. "SIGKILL", or null */
  signal: string | null;
  /** true when den killed the process because its `timeoutMs` passed */
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** One UTF-8 stream: decodes chunks, calls the callbacks, optionally collects. */
class OutputChannel {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly parts: string[] = [];

  constructor(
    private readonly onText: ((data: string) => void) | undefined,
    private readonly onBytes: ((data: Uint8Array) => void) | undefined,
    private readonly collect: boolean,
  ) {}

  push(bytes: Uint8Array): void {
    this.onBytes?.(bytes);
    if (!this.onText && !this.collect) return;
    const text = this.decoder.decode(bytes, { stream: true });
    if (text.length === 0) return;
    if (this.collect) this.parts.push(text);
    this.onText?.(text);
  }

  end(): void {
    if (!this.onText && !this.collect) return;
    const rest = this.decoder.decode();
    if (rest.length === 0) return;
    if (this.collect) this.parts.push(rest);
    this.onText?.(rest);
  }

  get text(): string {
    return this.parts.join('');
  }
}

/**
 * Consumes the frames of one process (from a streamed exec response or a WebSocket) and turns them into two
 * promises: `started` (the pid, from STARTED) and `exited` (the ExitInfo, from EXIT). An ERROR frame rejects both
 * with the typed DenError it carries; a stream that ends before EXIT rejects them too. Transport-independent, so
 * the HTTP and WebSocket paths share it.
 */
export class ProcessFrames {
  readonly started: Promise<number>;
  readonly exited: Promise<ExitInfo>;
  private resolveStarted!: (pid: number) => void;
  private rejectStarted!: (err: Error) => void;
  private resolveExited!: (info: ExitInfo) => void;
  private rejectExited!: (err: Error) => void;
  private readonly decoder = new FrameDecoder();
  private readonly stdout: OutputChannel;
  private readonly stderr: OutputChannel;
  private done = false;
  pid: number | undefined;

  constructor(output: OutputOptions = {}, knownPid?: number) {
    const collect = output.collectOutput ?? true;
    this.stdout = new OutputChannel(output.onStdout, output.onStdoutBytes, collect);
    this.stderr = new OutputChannel(output.onStderr, output.onStderrBytes, collect);
    this.started = new Promise((resolve, reject) => {
      this.resolveStarted = resolve;
      this.rejectStarted = reject;
    });
    this.exited = new Promise((resolve, reject) => {
      this.resolveExited = resolve;
      this.rejectExited = reject;
    });
    // Callers often await only one of the two; the other must not become an unhandled rejection.
    this.started.catch(() => {});
    this.exited.catch(() => {});
    if (knownPid !== undefined) {
      this.pid = knownPid;
      this.resolveStarted(knownPid);
    }
  }

  /** True once EXIT, ERROR or a failure ended the stream. */
  get finished(): boolean {
    return this.done;
  }

  /** Feeds raw bytes of the stream (frames may be split or packed arbitrarily). */
  pushBytes(chunk: Uint8Array): void {
    for (const frame of this.decoder.push(chunk)) this.handle(frame);
  }

  /** Handles one frame. A throwing output callback fails the process stream with that error. */
  handle(frame: Frame): void {
    if (this.done) return;
    switch (frame.type) {
      case FrameType.STARTED: {
        const { pid } = decodeJson<{ pid: number }>(frame);
        this.pid = pid;
        this.resolveStarted(pid);
        return;
      }
      case FrameType.STDOUT:
        this.stdout.push(frame.payload);
        return;
      case FrameType.STDERR:
        this.stderr.push(frame.payload);
        return;
      case FrameType.EXIT: {
        const info = decodeJson<ExitInfo>(frame);
        this.stdout.end();
        this.stderr.end();
        this.done = true;
        // An EXIT without STARTED (a reconnect to a finished process) still answers `started`.
        if (this.pid !== undefined) this.resolveStarted(this.pid);
        else this.rejectStarted(new DenError('INTERNAL', 'the process exited before it reported its pid'));
        this.resolveExited({ exitCode: info.exitCode, signal: info.signal, timedOut: info.timedOut });
        return;
      }
      case FrameType.ERROR: {
        let body: unknown;
        try {
          body = decodeJson(frame);
        } catch {
          body = undefined;
        }
        this.fail(errorFromBody(body, 'the process stream failed with an unreadable error frame'));
        return;
      }
      default:
        // Frame types this SDK does not know yet are skipped, so a newer daemon can add some.
        return;
    }
  }

  /** The stream ended. Before EXIT that is an error: the daemon or the connection went away. */
  end(): void {
    if (this.done) return;
    const partial = this.decoder.hasPartial ? ' in the middle of a frame' : '';
    this.fail(new DenError('INTERNAL', `the connection to the den daemon closed${partial} before the process exited`));
  }

  /** Fails both promises (first failure wins). */
  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.rejectStarted(err);
    this.rejectExited(err);
  }

  /** The result once exited, with the collected output. */
  async result(): Promise<CommandResult> {
    const info = await this.exited;
    return { ...info, stdout: this.stdout.text, stderr: this.stderr.text };
  }
}

/**
 * Reads a streamed exec response body into `frames` until it ends. Reads on after EXIT up to the end of the body,
 * so the keep-alive connection returns to the pool instead of being cut. Never throws: failures go to `frames`.
 */
export async function pumpBody(body: ReadableStream<Uint8Array> | null, frames: ProcessFrames): Promise<void> {
  if (!body) {
    frames.fail(new DenError('INTERNAL', 'the den daemon answered exec without a body'));
    return;
  }
  try {
    for await (const chunk of body) {
      try {
        frames.pushBytes(chunk);
      } catch (err) {
        // A throwing output callback or a corrupt frame: fail with that error and stop reading.
        frames.fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
    frames.end();
  } catch (err) {
    frames.fail(new DenError('INTERNAL', `the exec stream from the den daemon broke: ${describe(err)}`));
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

/**
 * The client side of a process over a WebSocket: one frame per binary message in both directions. Incoming
 * frames go to a ProcessFrames; the methods send STDIN / STDIN_EOF / RESIZE / SIGNAL frames.
 */
export class ProcessSocket {
  constructor(
    readonly ws: WebSocket,
    readonly frames: ProcessFrames,
  ) {
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      try {
        frames.pushBytes(toBytes(data));
      } catch (err) {
        frames.fail(err instanceof Error ? err : new Error(String(err)));
      }
      if (frames.finished) ws.close();
    });
    ws.on('close', () => frames.end());
    ws.on('error', (err) => frames.fail(new DenError('INTERNAL', `the process WebSocket failed: ${err.message}`)));
  }

  /** Sends one frame; resolves once it is handed to the socket (so large stdin is sent with backpressure). */
  send(frame: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== this.ws.OPEN) {
        reject(new DenError('INTERNAL', 'the process stream is closed: the process has exited or was disconnected'));
        return;
      }
      this.ws.send(frame, { binary: true }, (err) => (err ? reject(err) : resolve()));
    });
  }

  sendSpec(spec: unknown): Promise<void> {
    return this.send(encodeJsonFrame(FrameType.SPEC, spec));
  }

  sendStdin(data: string | Uint8Array): Promise<void> {
    return this.send(encodeFrame(FrameType.STDIN, data));
  }

  closeStdin(): Promise<void> {
    return this.send(encodeFrame(FrameType.STDIN_EOF));
  }

  resize(size: PtySize): Promise<void> {
    return this.send(encodeJsonFrame(FrameType.RESIZE, { cols: size.cols, rows: size.rows }));
  }

  signal(signal: string): Promise<void> {
    return this.send(encodeJsonFrame(FrameType.SIGNAL, { signal }));
  }

  /** Streams `stdin` as STDIN frames, then STDIN_EOF. Stops quietly when the process ends first. */
  async pipe(stdin: string | Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    try {
      if (typeof stdin === 'string' || stdin instanceof Uint8Array) {
        if (stdin.length > 0) await this.sendStdin(stdin);
      } else {
        for await (const chunk of stdin) {
          if (this.frames.finished) return;
          await this.sendStdin(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        }
      }
      if (!this.frames.finished) await this.closeStdin();
    } catch (err) {
      if (!this.frames.finished) throw err;
    }
  }

  close(): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close();
  }
}

function toBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}
