import type { ExecRequest, ExitInfo, PtySize } from '@den/shared';
import type { DenClient } from './client.js';
import type { RequestOptions } from './config.js';
import { InvalidArgumentError } from './errors.js';
import { ProcessFrames, ProcessSocket } from './process-stream.js';

/** The login shell a PTY runs when no `cmd` is given. */
export const DEFAULT_PTY_COMMAND: readonly string[] = ['bash', '-l'];
/** TERM set for PTY processes unless `env` gives one; the agent's terminal emulation expects an xterm. */
export const DEFAULT_TERM = 'xterm-256color';

/** Options of `pty.create`. */
export interface PtyCreateOptions extends RequestOptions {
  cols: number;
  rows: number;
  /** terminal output (stdout and stderr of the process, as the terminal shows them) */
  onData(data: Uint8Array): void;
  /** argv to run; default: the user's login shell, `['bash', '-l']` */
  cmd?: string[];
  user?: string;
  cwd?: string;
  /** extra environment; `TERM` defaults to xterm-256color */
  env?: Record<string, string>;
  /** den kills the process after this many ms */
  timeoutMs?: number;
}

/**
 * An interactive process on a pseudo-terminal.
 *
 * @example
 * ```ts
 * const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => process.stdout.write(d) });
 * await pty.sendInput('echo hi; exit\n');
 * const { exitCode } = await pty.wait();
 * ```
 */
export class PtyHandle {
  /** @internal */
  constructor(
    /** pid of the process inside the sandbox */
    readonly pid: number,
    private readonly socket: ProcessSocket,
  ) {}

  /** Types into the terminal (keys, pasted text, control characters such as `\x03` for Ctrl-C). */
  sendInput(data: string | Uint8Array): Promise<void> {
    return this.socket.sendStdin(data);
  }

  /** Changes the terminal size; the process gets SIGWINCH. */
  resize(size: PtySize): Promise<void> {
    checkSize(size);
    return this.socket.resize(size);
  }

  /** Sends SIGKILL (or `signal`) to the process. A no-op once it exited. */
  async kill(signal = 'SIGKILL'): Promise<void> {
    if (this.socket.frames.finished) return;
    await this.socket.signal(signal);
  }

  /** Waits until the process exits. */
  wait(): Promise<ExitInfo> {
    return this.socket.frames.exited;
  }

  /** Closes the connection (the daemon then ends the process). */
  disconnect(): void {
    this.socket.close();
  }
}

/**
 * Pseudo-terminals in one sandbox: `sandbox.pty`.
 *
 * @example
 * ```ts
 * const pty = await sbx.pty.create({ cols: 120, rows: 40, onData: (d) => term.write(d) });
 * term.onData((keys) => pty.sendInput(keys));
 * ```
 */
export class Pty {
  /** @internal */
  constructor(
    private readonly client: DenClient,
    private readonly ref: string,
  ) {}

  /**
   * Starts a process on a new PTY (over the exec WebSocket) and resolves once it runs.
   *
   * @example
   * ```ts
   * const pty = await sbx.pty.create({ cols: 80, rows: 24, cmd: ['htop'], onData: (d) => process.stdout.write(d) });
   * ```
   */
  async create(opts: PtyCreateOptions): Promise<PtyHandle> {
    checkSize(opts);
    const request: ExecRequest = {
      cmd: opts.cmd && opts.cmd.length > 0 ? [...opts.cmd] : [...DEFAULT_PTY_COMMAND],
      env: { TERM: DEFAULT_TERM, ...opts.env },
      pty: { cols: opts.cols, rows: opts.rows },
    };
    if (opts.user) request.user = opts.user;
    if (opts.cwd) request.cwd = opts.cwd;
    if (opts.timeoutMs !== undefined) request.timeoutMs = opts.timeoutMs;
    const frames = new ProcessFrames({ onStdoutBytes: opts.onData, onStderrBytes: opts.onData, collectOutput: false });
    const socket = new ProcessSocket(await this.client.execWebSocket(this.ref, opts), frames);
    try {
      await socket.sendSpec(request);
      const pid = await frames.started;
      return new PtyHandle(pid, socket);
    } catch (err) {
      socket.close();
      throw err;
    }
  }
}

function checkSize(size: PtySize): void {
  for (const key of ['cols', 'rows'] as const) {
    const v = size[key];
    if (!Number.isInteger(v) || v < 1 || v > 1000) {
      throw new InvalidArgumentError(`pty ${key} ${v} is invalid: give an integer from 1 to 1000`);
    }
  }
}
