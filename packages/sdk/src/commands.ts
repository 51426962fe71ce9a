import { DenError, type ExecRequest, type ProcessInfo } from '@den/shared';
import type { DenClient } from './client.js';
import type { RequestOptions } from './config.js';
import { InvalidArgumentError, ProcessNotFoundError } from './errors.js';
import { type CommandResult, type OutputOptions, ProcessFrames, ProcessSocket, pumpBody } from './process-stream.js';

/** Options of `commands.run`. */
export interface RunOptions extends OutputOptions {
  /** working directory; defaults to the user's home */
  cwd?: string;
  /** user name or uid inside the sandbox; defaults to the image's user */
  user?: string;
  /** extra environment, merged over the sandbox's */
  env?: Record<string, string>;
  /** den kills the process (SIGKILL to its group) after this many ms and reports `timedOut: true` */
  timeoutMs?: number;
  /** return a CommandHandle as soon as the process runs; it keeps running when the handle disconnects */
  background?: boolean;
  /** data for the process's stdin; stdin is closed after it. Uses the exec WebSocket. */
  stdin?: string | Uint8Array | AsyncIterable<Uint8Array>;
  /** optional tag shown by `commands.list()` */
  tag?: string;
}

/** `run` options that return a handle. */
export type BackgroundRunOptions = RunOptions & { background: true };

/** How a CommandHandle talks to its process once it runs. */
interface Control {
  sendStdin(data: string | Uint8Array): Promise<void>;
  signal(signal: string): Promise<void>;
  disconnect(): void;
}

/**
 * A running process: started with `commands.run(cmd, {background: true})` or attached with
 * `commands.connect(pid)`.
 *
 * @example
 * ```ts
 * const server = await sbx.commands.run('python3 -m http.server 8000', { background: true });
 * // ... later
 * await server.kill();
 * const { signal } = await server.wait(); // 'SIGKILL'
 * ```
 */
export class CommandHandle {
  /** @internal */
  constructor(
    /** pid of the process inside the sandbox */
    readonly pid: number,
    private readonly frames: ProcessFrames,
    private readonly control: Control,
  ) {}

  /**
   * Waits until the process exits and returns its result (collected output from the time this handle exists).
   * Does not throw on a non-zero exit; throws when the stream to the daemon breaks or the handle disconnected.
   */
  wait(): Promise<CommandResult> {
    return this.frames.result();
  }

  /** Sends SIGKILL (or `signal`) to the process. A no-op once it exited. */
  async kill(signal = 'SIGKILL'): Promise<void> {
    if (this.frames.finished) return;
    await this.control.signal(signal);
  }

  /** Writes to the process's stdin. */
  sendStdin(data: string | Uint8Array): Promise<void> {
    return this.control.sendStdin(data);
  }

  /**
   * Stops receiving output without touching the process: a background process keeps running and can be
   * reattached with `commands.connect(pid)`. `wait()` rejects afterwards.
   */
  disconnect(): void {
    this.frames.fail(
      new DenError('INTERNAL', `disconnected from process ${this.pid}; reattach with commands.connect(${this.pid})`),
    );
    this.control.disconnect();
  }
}

/** Normalizes a command: a string runs through a login shell (`bash -lc`), an array is the argv as it is. */
export function toArgv(cmd: string | string[]): string[] {
  if (typeof cmd === 'string') {
    if (cmd.trim() === '') throw new InvalidArgumentError('command is empty: give a shell command line');
    return ['bash', '-lc', cmd];
  }
  if (cmd.length === 0) throw new InvalidArgumentError('command is empty: give at least the program name');
  return [...cmd];
}

/**
 * Processes in one sandbox: `sandbox.commands`.
 *
 * @example
 * ```ts
 * const r = await sbx.commands.run('ls -l /');
 * console.log(r.exitCode, r.stdout);
 * ```
 */
export class Commands {
  /** @internal */
  constructor(
    private readonly client: DenClient,
    private readonly ref: string,
  ) {}

  /**
   * Runs a command and waits for it (or, with `background: true`, returns a handle once it runs). A string runs
   * as `bash -lc <string>`; an array is the argv as it is. Without `stdin` it uses one streamed POST (the fast
   * path); with `stdin` the exec WebSocket. A non-zero exit is returned, not thrown; a command that cannot start
   * throws the daemon's error (e.g. `ExecutableNotFoundError`).
   *
   * @example
   * ```ts
   * const { exitCode, stdout } = await sbx.commands.run(['cat', '/etc/os-release']);
   * await sbx.commands.run('npm test', { cwd: '/home/user/app', onStdout: (s) => process.stdout.write(s) });
   * const wc = await sbx.commands.run('wc -l', { stdin: 'a\nb\n' }); // wc.stdout === '2\n'
   * ```
   */
  run(cmd: string | string[], opts: BackgroundRunOptions): Promise<CommandHandle>;
  run(cmd: string | string[], opts?: RunOptions & { background?: false }): Promise<CommandResult>;
  run(cmd: string | string[], opts?: RunOptions): Promise<CommandResult | CommandHandle>;
  async run(cmd: string | string[], opts: RunOptions = {}): Promise<CommandResult | CommandHandle> {
    const request: ExecRequest = { cmd: toArgv(cmd) };
    if (opts.env) request.env = opts.env;
    if (opts.cwd) request.cwd = opts.cwd;
    if (opts.user) request.user = opts.user;
    if (opts.timeoutMs !== undefined) request.timeoutMs = opts.timeoutMs;
    if (opts.background) request.background = true;
    if (opts.tag) request.tag = opts.tag;
    return opts.stdin === undefined ? this.runStreamed(request, opts) : this.runWebSocket(request, opts, opts.stdin);
  }

  /** POST /exec: the response body is the frame stream; stdin and signals go through their own routes. */
  private async runStreamed(request: ExecRequest, opts: RunOptions): Promise<CommandResult | CommandHandle> {
    const abort = new AbortController();
    const res = await this.client.exec(this.ref, request, { signal: abort.signal });
    const frames = new ProcessFrames(opts);
    const pumping = pumpBody(res.body, frames);
    if (!opts.background) {
      try {
        const result = await frames.result();
        await pumping;
        return result;
      } catch (err) {
        abort.abort();
        await pumping;
        throw err;
      }
    }
    let pid: number;
    try {
      pid = await frames.started;
    } catch (err) {
      abort.abort();
      throw err;
    }
    return new CommandHandle(pid, frames, {
      sendStdin: (data) => this.client.sendStdin(this.ref, pid, data),
      signal: (signal) => this.client.signalProcess(this.ref, pid, signal),
      disconnect: () => abort.abort(),
    });
  }

  /** The exec WebSocket: SPEC, wait for STARTED, then stream stdin while output arrives. */
  private async runWebSocket(
    request: ExecRequest,
    opts: RunOptions,
    stdin: string | Uint8Array | AsyncIterable<Uint8Array>,
  ): Promise<CommandResult | CommandHandle> {
    const frames = new ProcessFrames(opts);
    const socket = new ProcessSocket(await this.client.execWebSocket(this.ref), frames);
    try {
      await socket.sendSpec(request);
      const pid = await frames.started;
      // Stdin failures (a throwing iterable) fail the process stream, so wait() reports them.
      const piping = socket.pipe(stdin).catch((err: unknown) => {
        frames.fail(err instanceof Error ? err : new Error(String(err)));
        socket.close();
      });
      if (opts.background) {
        return new CommandHandle(pid, frames, {
          sendStdin: (data) => socket.sendStdin(data),
          signal: (signal) => socket.signal(signal),
          disconnect: () => socket.close(),
        });
      }
      // Not awaiting `piping`: a command may exit without reading all of stdin (or while a terminal still
      // waits for input); the pipe notices the exit at its next chunk and stops.
      void piping;
      return await frames.result();
    } finally {
      if (!opts.background) socket.close();
    }
  }

  /**
   * The processes the sandbox's agent knows: running ones and ended background ones not yet read.
   *
   * @example
   * ```ts
   * for (const p of await sbx.commands.list()) console.log(p.pid, p.cmd.join(' '));
   * ```
   */
  list(opts?: RequestOptions): Promise<ProcessInfo[]> {
    return this.client.listProcesses(this.ref, opts);
  }

  /**
   * Sends a signal (default SIGKILL) to a process.
   *
   * @example
   * ```ts
   * await sbx.commands.kill(pid, 'SIGTERM');
   * ```
   */
  kill(pid: number, signal = 'SIGKILL', opts?: RequestOptions): Promise<void> {
    return this.client.signalProcess(this.ref, pid, signal, opts);
  }

  /**
   * Writes to a running process's stdin.
   *
   * @example
   * ```ts
   * await sbx.commands.sendStdin(pid, 'quit\n');
   * ```
   */
  sendStdin(pid: number, data: string | Uint8Array, opts?: RequestOptions): Promise<void> {
    return this.client.sendStdin(this.ref, pid, data, opts);
  }

  /**
   * Attaches to a running background process: its buffered output is replayed to the callbacks, then live output
   * follows. Throws `ProcessNotFoundError` for an unknown pid.
   *
   * @example
   * ```ts
   * const h = await sbx.commands.connect(pid, { onStdout: (s) => process.stdout.write(s) });
   * const { exitCode } = await h.wait();
   * ```
   */
  async connect(pid: number, opts: OutputOptions & RequestOptions = {}): Promise<CommandHandle> {
    // The daemon reports an unknown pid inside the stream (after the upgrade); asking first lets connect() itself
    // throw, as callers expect. A process that vanishes in between still ends wait() with the daemon's error.
    const known = await this.client.listProcesses(this.ref, opts);
    if (!known.some((p) => p.pid === pid)) {
      throw new ProcessNotFoundError(
        `no process with pid ${pid} in sandbox ${this.ref}; commands.list() shows the running ones`,
      );
    }
    const frames = new ProcessFrames(opts, pid);
    const socket = new ProcessSocket(await this.client.processWebSocket(this.ref, pid, opts), frames);
    return new CommandHandle(pid, frames, {
      sendStdin: (data) => socket.sendStdin(data),
      signal: (signal) => socket.signal(signal),
      disconnect: () => socket.close(),
    });
  }
}
