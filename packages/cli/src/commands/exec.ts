import { type ExitInfo, Sandbox } from '@den/sdk';
import { exitCodeFor } from '../errors.js';
import type { Context, ExecArgs, RunArgs } from '../program.js';

/**
 * `den exec REF -- CMD...`: streams the command's stdout/stderr to ours as raw bytes (binary output survives) and
 * exits with its exit code. Without -i it takes the fast path (one streamed POST); -i forwards stdin over the
 * WebSocket; -t runs it on a PTY.
 */
export async function exec(ctx: Context, args: ExecArgs): Promise<number> {
  const sbx = await Sandbox.connect(args.ref, { url: ctx.config.url });
  const common = {
    ...(args.user ? { user: args.user } : {}),
    ...(args.cwd ? { cwd: args.cwd } : {}),
    ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
  };
  if (args.tty) {
    const info = await runOnTerminal(ctx, sbx, {
      ...common,
      cmd: args.cmd,
      env: args.env,
      interactive: args.interactive,
    });
    return finish(ctx, info, args.timeoutMs);
  }
  const result = await sbx.commands.run(args.cmd, {
    ...common,
    ...(Object.keys(args.env).length ? { env: args.env } : {}),
    ...(args.interactive ? { stdin: process.stdin } : {}),
    collectOutput: false,
    onStdoutBytes: (data) => ctx.stdout.write(data),
    onStderrBytes: (data) => ctx.stderr.write(data),
  });
  return finish(ctx, result, args.timeoutMs);
}

/** `den run REF`: an interactive login shell (or CMD) on a PTY, like `ssh`. */
export async function run(ctx: Context, args: RunArgs): Promise<number> {
  const sbx = await Sandbox.connect(args.ref, { url: ctx.config.url });
  const info = await runOnTerminal(ctx, sbx, {
    cmd: args.cmd,
    env: args.env,
    interactive: true,
    ...(args.user ? { user: args.user } : {}),
    ...(args.cwd ? { cwd: args.cwd } : {}),
  });
  return finish(ctx, info, undefined);
}

function finish(ctx: Context, info: ExitInfo, timeoutMs: number | undefined): number {
  if (info.timedOut) {
    const after = timeoutMs !== undefined ? ` after ${timeoutMs / 1000} s` : '';
    ctx.stderr.write(`den: command timed out${after} and was killed\n`);
  }
  return exitCodeFor(info);
}

interface TerminalOptions {
  cmd: string[];
  env: Record<string, string>;
  interactive: boolean;
  user?: string;
  cwd?: string;
  timeoutMs?: number;
}

/**
 * Runs a process on a PTY wired to this terminal: raw mode while it runs (every key, Ctrl-C included, goes to
 * the sandbox), stdin forwarded, SIGWINCH forwarded as a resize; the terminal is restored however it ends.
 */
async function runOnTerminal(ctx: Context, sbx: Sandbox, opts: TerminalOptions): Promise<ExitInfo> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  const pty = await sbx.pty.create({
    ...size(),
    ...(opts.cmd.length > 0 ? { cmd: opts.cmd } : {}),
    ...(opts.user ? { user: opts.user } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    env: { TERM: ctx.env.TERM || 'xterm-256color', ...opts.env },
    onData: (data) => ctx.stdout.write(data),
  });

  const raw = opts.interactive && stdin.isTTY === true;
  const restore = () => {
    if (raw && stdin.isTTY) stdin.setRawMode(false);
  };
  const forward = (data: Buffer) => {
    pty.sendInput(data).catch(() => {
      // The process ended while input was in flight; wait() reports how it ended.
    });
  };
  // Piped input ends: send the terminal's EOF character (Ctrl-D), as typing it would.
  const onEnd = () => forward(Buffer.from([4]));
  const onResize = () => {
    pty.resize(size()).catch(() => {});
  };
  if (raw) stdin.setRawMode(true);
  process.once('exit', restore);
  if (opts.interactive) {
    stdin.on('data', forward);
    stdin.once('end', onEnd);
    stdin.resume();
  }
  process.on('SIGWINCH', onResize);
  try {
    return await pty.wait();
  } finally {
    restore();
    process.off('exit', restore);
    process.off('SIGWINCH', onResize);
    if (opts.interactive) {
      stdin.off('data', forward);
      stdin.off('end', onEnd);
      stdin.pause();
    }
    pty.disconnect();
  }
}
