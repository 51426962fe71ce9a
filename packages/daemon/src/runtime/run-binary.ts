import { DenError } from '@den/shared';
import { runTool, type ToolExit } from '../tool-spawn.js';

export interface RunBinaryOptions {
  /** the runtime's name, used in error messages ("runsc create failed: ...") */
  runtime: string;
  /** kill the binary (SIGKILL to its pid only, never its group) after this long; default 30 s */
  timeoutMs?: number;
  /**
   * Host file descriptor used as the binary's stdout and stderr instead of pipes. `create` needs it: the container's
   * init inherits these descriptors, and a container that outlives the daemon must not hold the daemon's pipes.
   * Output is then not captured; callers read their log file for the error text.
   */
  outputFd?: number;
}

/** How a runtime binary ended (`spawnBinary`). */
export type BinaryExit = ToolExit;

/** A failure of a runtime binary, with what it printed: DenError RUNTIME_FAILED. */
export function runtimeFailed(
  runtime: string,
  subcommand: string,
  text: string,
  details?: Record<string, unknown>,
): DenError {
  const trimmed = text.trim() || 'no output';
  return new DenError('RUNTIME_FAILED', `${runtime} ${subcommand} failed: ${trimmed}`, {
    runtime,
    subcommand,
    ...details,
  });
}

const MAX_CAPTURE = 1 << 20;

/**
 * Spawns a binary with an argv array (never a shell) and resolves with how it exited, whatever the exit code.
 *
 * The child is spawned `detached` (its own session and process group) so that anything it leaves running, such as
 * a container's init or the runsc sandbox and gofer, is never in the daemon's process group and survives the
 * daemon's terminal or service manager signalling that group. On timeout only the binary itself is killed: its
 * group may already contain the container, and the caller's cleanup (`delete`) removes half-made containers.
 * Rejects only when the binary cannot be started (RUNTIME_UNAVAILABLE).
 */
export async function spawnBinary(binary: string, args: string[], options: RunBinaryOptions): Promise<BinaryExit> {
  try {
    return await runTool(binary, args, {
      timeoutMs: options.timeoutMs ?? 30_000,
      maxCapture: MAX_CAPTURE,
      ...(options.outputFd !== undefined ? { outputFd: options.outputFd } : {}),
    });
  } catch (err) {
    throw new DenError(
      'RUNTIME_UNAVAILABLE',
      `${options.runtime} binary ${binary} cannot be run: ${(err as Error).message}`,
    );
  }
}

/**
 * Runs one runtime subcommand and resolves with its output when it exits 0; otherwise rejects with
 * `DenError('RUNTIME_FAILED', '<runtime> <subcommand> failed: <stderr>')`.
 */
export async function runBinary(
  binary: string,
  args: string[],
  options: RunBinaryOptions,
): Promise<{ stdout: string; stderr: string }> {
  const exit = await spawnBinary(binary, args, options);
  if (exit.code === 0) return { stdout: exit.stdout, stderr: exit.stderr };
  throw runtimeFailed(options.runtime, subcommandOf(args), describeExit(exit, options.timeoutMs ?? 30_000), {
    exitCode: exit.code,
  });
}

/** The first argument that is not a flag or a flag's value: the subcommand ("create", "state", ...). */
export function subcommandOf(args: string[]): string {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--root' || a === '--log') {
      i++;
      continue;
    }
    if (!a.startsWith('-')) return a;
  }
  return args[0] ?? '';
}

export function describeExit(exit: BinaryExit, timeoutMs: number): string {
  const why = exit.timedOut
    ? `timed out after ${timeoutMs} ms`
    : exit.signal
      ? `killed by ${exit.signal}`
      : `exit code ${exit.code}`;
  const text = headAndTail(exit.stderr.trim() || exit.stdout.trim(), 2000);
  return text ? `${text} (${why})` : why;
}

/**
 * The start and the end of a long text: a runtime says what failed first (runsc: "... cannot be saved in connected
 * state: local ..."), may then dump whole structures, and ends with the exit reason.
 */
function headAndTail(text: string, each: number): string {
  if (text.length <= 2 * each) return text;
  return `${text.slice(0, each)} [... ${text.length - 2 * each} characters ...] ${text.slice(-each)}`;
}
