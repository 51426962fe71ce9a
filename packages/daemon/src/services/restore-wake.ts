import { setTimeout as sleep } from 'node:timers/promises';
import { DenError } from '@den/shared';
import { pathExists } from '../fs-util.js';

export interface WakeSteps {
  /** sends SIGUSR2 to the restored container (tini forwards it to the agent) */
  signal(): Promise<void>;
  /** the host path of the agent's socket: the agent creates it when it listens again */
  socketPath: string;
  /** resolves once the agent answers (a health request) */
  ready(timeoutMs: number): Promise<unknown>;
  timeoutMs: number;
}

/** How often the socket file is looked for after a signal. */
const SOCKET_POLL_MS = 5;
/** How long a signal is given before it is sent again. */
const RESIGNAL_MS = 100;

/**
 * The agent closed its listener for the checkpoint; SIGUSR2 makes it listen again. A signal sent while the restored
 * sandbox is still loading can be lost (measured: the first one right after `runsc restore` returned sometimes never
 * arrived), so it is repeated every RESIGNAL_MS until the agent's socket file appears; the agent ignores extra ones.
 * Watching the file (a stat every 5 ms, no connection attempts) makes the wake cost the signal plus the agent's
 * listen, instead of rounding up to a fixed retry step.
 */
export async function wakeRestoredAgent(steps: WakeSteps): Promise<void> {
  const deadline = performance.now() + steps.timeoutMs;
  let lastError: unknown;
  while (performance.now() < deadline) {
    try {
      await steps.signal();
    } catch (err) {
      // The container may not take signals yet right after the restore; the next round tries again.
      lastError = err;
    }
    const resignalAt = Math.min(deadline, performance.now() + RESIGNAL_MS);
    while (performance.now() < resignalAt) {
      if (await pathExists(steps.socketPath)) {
        await steps.ready(Math.max(1, deadline - performance.now()));
        return;
      }
      await sleep(SOCKET_POLL_MS);
    }
  }
  throw new DenError(
    'AGENT_UNAVAILABLE',
    `the restored sandbox's agent did not listen again within ${steps.timeoutMs} ms${lastError ? ` (${String(lastError).slice(0, 200)})` : ''}`,
  );
}
