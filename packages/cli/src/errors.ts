import { constants } from 'node:os';
import { ConnectionError, DenError, type ExitInfo, RequestTimeoutError } from '@den/sdk';

/** Exit status of den itself when it fails (bad flags get EXIT_USAGE). */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** Exit status of `den exec` when the command hit its --timeout, as timeout(1) does. */
export const EXIT_TIMEOUT = 124;

/** The command line is wrong: exit 2, message says how to write it. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the CLI detected itself (no daemon error): exit 1 with this message. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = EXIT_FAILURE,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * The one line (without the `den: ` prefix) and the exit status for an error that ends a command. Daemon errors
 * keep the daemon's message, which already says what to fix.
 */
export function describeError(err: unknown, url: string): { message: string; exitCode: number } {
  if (err instanceof UsageError) return { message: err.message, exitCode: EXIT_USAGE };
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof ConnectionError) {
    return { message: `cannot reach the den daemon at ${err.url || url}: start it with \`den up\``, exitCode: 1 };
  }
  if (err instanceof RequestTimeoutError) return { message: err.message, exitCode: EXIT_FAILURE };
  if (err instanceof DenError) {
    const id = err.code === 'INTERNAL' && err.requestId ? ` (request ${err.requestId})` : '';
    return { message: `${err.message}${id}`, exitCode: EXIT_FAILURE };
  }
  if (err instanceof Error) return { message: oneLine(err.message), exitCode: EXIT_FAILURE };
  return { message: oneLine(String(err)), exitCode: EXIT_FAILURE };
}

/**
 * The exit status that mirrors a process's end, as shells report it: its exit code; 128 + the signal number when
 * a signal killed it; 124 when den's timeout killed it.
 */
export function exitCodeFor(info: ExitInfo): number {
  if (info.timedOut) return EXIT_TIMEOUT;
  if (info.exitCode !== null && info.exitCode !== undefined) return info.exitCode;
  if (info.signal) {
    const n = (constants.signals as Record<string, number | undefined>)[info.signal];
    return 128 + (n ?? 0);
  }
  return EXIT_FAILURE;
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, '; ');
}
