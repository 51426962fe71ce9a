import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Readable } from 'node:stream';
import {
  DenError,
  decodeJson,
  type ExitInfo,
  encodeFrame,
  encodeJsonFrame,
  type FileEntry,
  type Frame,
  FrameDecoder,
  FrameType,
  type ProcessInfo,
  type ProcessSpec,
  type PtySize,
} from '@den/shared';
import {
  type AgentHealth,
  FRAMES_CONTENT_TYPE,
  JSON_CONTENT_TYPE,
  type ListeningSocket,
  type TcpConnection,
  type WatchError,
  type WatchEvent,
} from './protocol.js';

export type { AgentHealth, ListeningSocket, TcpConnection, WatchEvent, WatchEventType } from './protocol.js';
export { FRAMES_CONTENT_TYPE } from './protocol.js';

export interface AgentClientOptions {
  /** limit for calls that answer at once (health, stat, signal, ...); not for streams and file bodies */
  requestTimeoutMs?: number;
  /**
   * Called when a session opens (a process stream: exec, PTY, attach; a file watch); the function it returns is
   * called when that stream closes. The daemon counts open sessions as activity (idle auto-pause).
   */
  onSession?: () => () => void;
}

export interface RunResult {
  pid: number;
  stdout: string;
  stderr: string;
  exit: ExitInfo;
}

export interface FileReadResult {
  /** the file's bytes; consume or destroy it */
  stream: Readable;
  size: number;
}

export interface UserOption {
  /** user name or uid inside the sandbox; new files and directories belong to it */
  user?: string;
}

const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 16 * 1024 * 1024;
const READY_POLL_MS = 5;

/**
 * The daemon's client of one sandbox's agent: one HTTP/2 session over the agent's Unix socket, connected on first
 * use and again after it closes, with every call as one stream on it.
 *
 * @example
 * const agent = new AgentClient('/var/lib/den/sandboxes/abc/run/agent.sock');
 * await agent.waitReady(5000);
 * const { stdout, exit } = await agent.run({ cmd: ['uname', '-a'] });
 * await agent.close();
 */
export class AgentClient {
  private session: ClientHttp2Session | undefined;
  private readonly requestTimeoutMs: number;

  constructor(
    readonly socketPath: string,
    options: AgentClientOptions = {},
  ) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.onSession = options.onSession;
  }

  private readonly onSession: (() => () => void) | undefined;

  /** Reports `stream` as a session from now until it closes. */
  private asSession(stream: ClientHttp2Stream): ClientHttp2Stream {
    if (this.onSession) stream.once('close', this.onSession());
    return stream;
  }

  /** Closes the session once its streams are done (at most 1 s, then it is destroyed). */
  async close(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (!session || session.destroyed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => session.destroy(), 1000);
      session.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Drops the session at once, with whatever streams it still carries (before a checkpoint). */
  destroy(): void {
    const session = this.session;
    this.session = undefined;
    session?.destroy();
  }

  health(timeoutMs = this.requestTimeoutMs): Promise<AgentHealth> {
    return this.unary<AgentHealth>('GET', '/health', undefined, timeoutMs);
  }

  /** Polls the socket until the agent answers, for use right after the sandbox starts. */
  async waitReady(timeoutMs: number): Promise<AgentHealth> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = deadline - performance.now();
      try {
        return await this.health(Math.max(1, Math.min(left, 1000)));
      } catch (err) {
        if (performance.now() + READY_POLL_MS >= deadline) {
          throw new DenError(
            'AGENT_UNAVAILABLE',
            `the sandbox agent at ${this.socketPath} was not ready within ${timeoutMs} ms: ${(err as Error).message}`,
          );
        }
        await sleep(READY_POLL_MS);
      }
    }
  }

  /** Starts a process and returns its stream: frames out, input frames in. */
  openProcess(spec: ProcessSpec): Promise<ProcessHandle> {
    const stream = this.asSession(
      this.open({ ':method': 'POST', ':path': '/process', 'content-type': FRAMES_CONTENT_TYPE }, false),
    );
    stream.write(encodeJsonFrame(FrameType.SPEC, spec));
    return this.processHandle(stream);
  }

  /**
   * Attaches to a running or ended (background) process: buffered output (none with `replay: false`; from output
   * frame `from` on when given, for a client that already received that many), then live output and EXIT.
   */
  connectProcess(pid: number, options: { replay?: boolean; from?: number } = {}): Promise<ProcessHandle> {
    const query =
      options.replay === false ? '?replay=false' : options.from !== undefined ? `?from=${options.from}` : '';
    const path = `/processes/${pid}/connect${query}`;
    const stream = this.asSession(
      this.open({ ':method': 'POST', ':path': path, 'content-type': FRAMES_CONTENT_TYPE }, false),
    );
    return this.processHandle(stream);
  }

  /** Runs a process to its end with the given stdin (none: stdin is closed at once) and collects its output. */
  async run(spec: ProcessSpec, options: { stdin?: string | Uint8Array } = {}): Promise<RunResult> {
    const stream = this.open({ ':method': 'POST', ':path': '/process', 'content-type': FRAMES_CONTENT_TYPE }, false);
    const frames = [encodeJsonFrame(FrameType.SPEC, spec)];
    if (options.stdin !== undefined) frames.push(encodeFrame(FrameType.STDIN, options.stdin));
    // Ending the request body right away is what closes the process's stdin.
    stream.end(frames.length === 1 ? frames[0] : Buffer.concat(frames));
    return (await this.processHandle(stream)).wait();
  }

  listProcesses(): Promise<ProcessInfo[]> {
    return this.unary<ProcessInfo[]>('GET', '/processes');
  }

  /** Asks the agent to close its listener before a checkpoint; it listens again on SIGUSR2 (see agent main.ts). */
  async prepareCheckpoint(): Promise<void> {
    await this.unary('POST', '/checkpoint/prepare', {});
  }

  /** Replaces the environment every new process of the sandbox gets (a warm-pool sandbox being handed out). */
  async setSandboxEnv(env: Record<string, string>): Promise<void> {
    await this.unary('PUT', '/env', env);
  }

  /** TCP endpoints inside the sandbox that are neither listening nor closed. */
  listConnections(): Promise<TcpConnection[]> {
    return this.unary<TcpConnection[]>('GET', '/connections');
  }

  /** TCP sockets listening inside the sandbox. */
  listPorts(): Promise<ListeningSocket[]> {
    return this.unary<ListeningSocket[]>('GET', '/ports');
  }

  /** Signals the process's group, e.g. "SIGTERM". */
  async signal(pid: number, signal: string): Promise<void> {
    await this.unary('POST', `/processes/${pid}/signal`, { signal });
  }

  async sendStdin(pid: number, data: string | Uint8Array): Promise<void> {
    await this.unary('POST', `/processes/${pid}/stdin`, typeof data === 'string' ? Buffer.from(data) : data);
  }

  async closeStdin(pid: number): Promise<void> {
    await this.unary('POST', `/processes/${pid}/stdin-eof`);
  }

  async resize(pid: number, size: PtySize): Promise<void> {
    await this.unary('POST', `/processes/${pid}/resize`, size);
  }

  async readFile(path: string, options: UserOption = {}): Promise<FileReadResult> {
    const stream = this.open(
      { ':method': 'GET', ':path': `/files/content?${query({ path, user: options.user })}` },
      true,
    );
    const headers = await this.response(stream);
    const status = Number(headers[':status']);
    if (status !== 200) throw await errorFromResponse(status, stream);
    return { stream, size: Number(headers['content-length'] ?? 0) };
  }

  /** Streams `body` into a file (atomically replaced); missing parent directories are created. */
  async writeFile(path: string, body: Readable | Uint8Array | string, options: UserOption = {}): Promise<FileEntry> {
    const stream = this.open(
      {
        ':method': 'PUT',
        ':path': `/files/content?${query({ path, user: options.user })}`,
        'content-type': 'application/octet-stream',
      },
      false,
    );
    let bodyError: Error | undefined;
    const source = typeof body === 'string' || body instanceof Uint8Array ? undefined : body;
    if (source) {
      source.once('error', (err) => {
        bodyError = err;
        stream.close(constants.NGHTTP2_CANCEL);
      });
      source.pipe(stream);
    } else {
      stream.end(body);
    }
    let headers: IncomingHttpHeaders;
    try {
      headers = await this.response(stream);
    } catch (err) {
      throw bodyError ?? err;
    }
    const status = Number(headers[':status']);
    if (status !== 200) {
      // The agent answered early (e.g. DISK_FULL) and stopped reading: the rest of the body is not wanted.
      if (source) {
        source.unpipe(stream);
        source.destroy();
      }
      throw await errorFromResponse(status, stream);
    }
    return JSON.parse((await readAll(stream)).toString('utf8')) as FileEntry;
  }

  list(path: string, depth = 1): Promise<FileEntry[]> {
    return this.unary<FileEntry[]>('GET', `/files/list?${query({ path, depth: String(depth) })}`);
  }

  stat(path: string): Promise<FileEntry> {
    return this.unary<FileEntry>('GET', `/files/stat?${query({ path })}`);
  }

  /** `mkdir -p`; an existing directory is not an error. */
  makeDir(path: string, options: UserOption = {}): Promise<FileEntry> {
    return this.unary<FileEntry>('POST', '/files/mkdir', { path, user: options.user });
  }

  move(from: string, to: string, options: UserOption = {}): Promise<FileEntry> {
    return this.unary<FileEntry>('POST', '/files/move', { from, to, user: options.user });
  }

  /** Removes a file or a directory tree. */
  async remove(path: string): Promise<void> {
    await this.unary('DELETE', `/files?${query({ path })}`);
  }

  /** Watches a directory; resolves once the watch is in place, so later changes are all reported. */
  async watch(path: string, options: { recursive?: boolean } = {}): Promise<WatchHandle> {
    const stream = this.asSession(
      this.open(
        {
          ':method': 'GET',
          ':path': `/files/watch?${query({ path, recursive: options.recursive ? 'true' : undefined })}`,
        },
        true,
      ),
    );
    const headers = await this.response(stream);
    const status = Number(headers[':status']);
    if (status !== 200) throw await errorFromResponse(status, stream);
    return new WatchHandle(stream);
  }

  private getSession(): ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = connect('http://agent', {
      createConnection: () => netConnect(this.socketPath),
      settings: { initialWindowSize: STREAM_WINDOW_BYTES },
    });
    session.on('error', () => {
      // Reported to each pending stream (ERR_HTTP2_STREAM_CANCEL with the cause).
    });
    const forget = (): void => {
      if (this.session === session) this.session = undefined;
    };
    session.once('close', forget);
    session.once('goaway', forget);
    session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
    this.session = session;
    return session;
  }

  private open(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    let stream: ClientHttp2Stream;
    try {
      stream = this.getSession().request(headers, { endStream });
    } catch {
      // The session was closing (the agent restarted or sent GOAWAY): one more try on a fresh session.
      this.session = undefined;
      try {
        stream = this.getSession().request(headers, { endStream });
      } catch (err) {
        throw this.unavailable(err);
      }
    }
    stream.on('error', () => {
      // Surfaced through response(), readAll() or the frames iterator.
    });
    return stream;
  }

  /** The response headers, or AGENT_UNAVAILABLE when the stream fails first. */
  private response(stream: ClientHttp2Stream, timeoutMs?: number): Promise<IncomingHttpHeaders> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        clearTimeout(timer);
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
      };
      const onResponse = (headers: IncomingHttpHeaders): void => {
        cleanup();
        resolve(headers);
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(this.unavailable(err));
      };
      const onClose = (): void => {
        cleanup();
        reject(this.unavailable(new Error(`the stream closed without an answer (HTTP/2 code ${stream.rstCode})`)));
      };
      stream.once('response', onResponse);
      stream.once('error', onError);
      stream.once('close', onClose);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          cleanup();
          stream.close(constants.NGHTTP2_CANCEL);
          reject(
            new DenError(
              'AGENT_UNAVAILABLE',
              `the sandbox agent at ${this.socketPath} did not answer within ${Math.round(timeoutMs)} ms`,
            ),
          );
        }, timeoutMs);
      }
    });
  }

  private async processHandle(stream: ClientHttp2Stream): Promise<ProcessHandle> {
    const headers = await this.response(stream);
    const status = Number(headers[':status']);
    if (status !== 200) throw await errorFromResponse(status, stream);
    return new ProcessHandle(stream);
  }

  /** A call with a JSON (or raw) body and a JSON (or empty) answer. */
  private async unary<T = undefined>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.requestTimeoutMs,
  ): Promise<T> {
    const raw = body instanceof Uint8Array;
    const headers: OutgoingHttpHeaders = { ':method': method, ':path': path };
    if (body !== undefined) headers['content-type'] = raw ? 'application/octet-stream' : JSON_CONTENT_TYPE;
    const stream = this.open(headers, body === undefined);
    if (body !== undefined) stream.end(raw ? body : JSON.stringify(body));
    const response = await this.response(stream, timeoutMs);
    const status = Number(response[':status']);
    if (status >= 400) throw await errorFromResponse(status, stream);
    const data = await readAll(stream);
    return (data.length === 0 ? undefined : JSON.parse(data.toString('utf8'))) as T;
  }

  private unavailable(err: unknown): DenError {
    if (err instanceof DenError) return err;
    const e = err as (Error & { code?: string; cause?: { code?: string; message?: string } }) | undefined;
    const reason = e?.cause?.code ?? e?.cause?.message ?? e?.code ?? e?.message ?? String(err);
    return new DenError(
      'AGENT_UNAVAILABLE',
      `the sandbox agent at ${this.socketPath} does not answer (${reason}); the sandbox may be starting, stopping or broken`,
    );
  }
}

/**
 * One process stream. `stream` is the raw HTTP/2 stream: its response body is frames as the agent sent them and
 * its request body takes input frames, so the daemon can relay both ways without decoding. The helpers below are
 * for callers that do want frames.
 *
 * Closing the stream before the EXIT frame (close(), or leaving a `frames()` loop early) kills a foreground
 * process; ending it (end()) only closes the process's stdin.
 */
export class ProcessHandle {
  constructor(readonly stream: ClientHttp2Stream) {}

  /** Decoded frames until the agent ends the stream; iterate once. */
  async *frames(): AsyncGenerator<Frame> {
    const decoder = new FrameDecoder();
    try {
      for await (const chunk of this.stream as AsyncIterable<Buffer>) {
        for (const frame of decoder.push(chunk)) yield frame;
      }
    } catch (err) {
      throw new DenError(
        'AGENT_UNAVAILABLE',
        `the process stream from the sandbox agent broke: ${(err as Error).message}`,
      );
    }
    if (decoder.hasPartial)
      throw new DenError('AGENT_UNAVAILABLE', 'the process stream from the sandbox agent was cut off');
    this.end();
  }

  /** Writes one input frame; false when the stream's buffer is full (wait for 'drain' on `stream`). */
  send(type: number, payload?: Uint8Array | string): boolean {
    if (!this.stream.writable) return false;
    return this.stream.write(encodeFrame(type, payload));
  }

  sendJson(type: number, value: unknown): boolean {
    if (!this.stream.writable) return false;
    return this.stream.write(encodeJsonFrame(type, value));
  }

  writeStdin(data: Uint8Array | string): boolean {
    return this.send(FrameType.STDIN, data);
  }

  closeStdin(): boolean {
    return this.send(FrameType.STDIN_EOF);
  }

  resize(size: PtySize): boolean {
    return this.sendJson(FrameType.RESIZE, size);
  }

  signal(signal: string): boolean {
    return this.sendJson(FrameType.SIGNAL, { signal });
  }

  /** No more input frames (for a foreground pipe process: its stdin is closed). */
  end(): void {
    if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  }

  /** Resets the stream; a foreground process is killed. */
  close(): void {
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
  }

  /** Collects everything until EXIT; an ERROR frame becomes a thrown DenError. */
  async wait(): Promise<RunResult> {
    const stdout: Uint8Array[] = [];
    const stderr: Uint8Array[] = [];
    let pid = 0;
    let exit: ExitInfo | undefined;
    for await (const frame of this.frames()) {
      switch (frame.type) {
        case FrameType.STARTED:
          pid = decodeJson<{ pid: number }>(frame).pid;
          break;
        case FrameType.STDOUT:
          stdout.push(frame.payload);
          break;
        case FrameType.STDERR:
          stderr.push(frame.payload);
          break;
        case FrameType.EXIT:
          exit = decodeJson<ExitInfo>(frame);
          break;
        case FrameType.ERROR:
          throw DenError.fromBody(decodeJson<unknown>(frame), 'the sandbox agent reported an unreadable error');
      }
    }
    if (!exit)
      throw new DenError('AGENT_UNAVAILABLE', 'the process stream from the sandbox agent ended without an exit status');
    return {
      pid,
      stdout: Buffer.concat(stdout).toString('utf8'),
      stderr: Buffer.concat(stderr).toString('utf8'),
      exit,
    };
  }
}

/** A directory watch: its events until the watch breaks or `close()` is called. */
export class WatchHandle {
  constructor(readonly stream: ClientHttp2Stream) {}

  /** Decoded events; ends when the agent ends the stream or after close(); a broken watch throws. Iterate once. */
  async *events(): AsyncGenerator<WatchEvent> {
    let pending = '';
    try {
      for await (const chunk of this.stream as AsyncIterable<Buffer>) {
        pending += chunk.toString('utf8');
        let newline = pending.indexOf('\n');
        while (newline !== -1) {
          const line = JSON.parse(pending.slice(0, newline)) as WatchEvent | WatchError;
          pending = pending.slice(newline + 1);
          newline = pending.indexOf('\n');
          if (line.type === 'error') throw DenError.fromBody(line.error, 'the directory watch broke');
          yield line;
        }
      }
    } catch (err) {
      if (err instanceof DenError) throw err;
      // A reset after close() is the normal end.
      if (this.stream.rstCode === constants.NGHTTP2_CANCEL) return;
      throw new DenError('AGENT_UNAVAILABLE', `the directory watch stream broke: ${(err as Error).message}`);
    }
  }

  close(): void {
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
  }
}

function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
  return q.toString();
}

function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', (err) =>
      reject(new DenError('AGENT_UNAVAILABLE', `reading the answer of the sandbox agent failed: ${err.message}`)),
    );
  });
}

async function errorFromResponse(status: number, stream: Readable): Promise<DenError> {
  let text = '';
  try {
    text = (await readAll(stream)).toString('utf8');
    return DenError.fromBody(JSON.parse(text), `the sandbox agent answered HTTP ${status}: ${text.slice(0, 200)}`);
  } catch {
    return new DenError('INTERNAL', `the sandbox agent answered HTTP ${status}: ${text.slice(0, 200)}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
