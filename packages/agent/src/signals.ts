import { constants } from 'node:os';
import { DenError } from './contract.js';

const byNumber = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** Accepts "SIGTERM", "TERM", "term" or a signal number, and returns the canonical name. */
export function parseSignal(value: unknown): NodeJS.Signals {
  if (typeof value === 'number' && byNumber.has(value)) return byNumber.get(value) as NodeJS.Signals;
  if (typeof value === 'string') {
    const upper = value.toUpperCase();
    const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
    if (Object.hasOwn(constants.signals, name)) return name as NodeJS.Signals;
    if (/^\d+$/.test(value) && byNumber.has(Number(value))) return byNumber.get(Number(value)) as NodeJS.Signals;
  }
  throw new DenError(
    'INVALID_ARGUMENT',
    `signal ${JSON.stringify(value)} is not a signal name; use e.g. "SIGTERM", "SIGINT" or "SIGKILL"`,
  );
}

export function signalName(n: number): string {
  return byNumber.get(n) ?? `SIG${n}`;
}

/**
 * Signals a whole process group (every child is started as a group leader, so pgid = pid), falling back to the
 * pid alone when the group does not exist, unless `groupOnly`. Returns false when neither exists.
 */
export function killGroup(pid: number, signal: NodeJS.Signals | number, groupOnly = false): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    // A just-forked PTY child may not have called setsid yet.
    if (groupOnly) return false;
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** True while any process of the group exists (including zombies not yet reaped). */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
