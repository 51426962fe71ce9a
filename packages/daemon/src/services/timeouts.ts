import type { SandboxRecord, SandboxStore } from './ports.js';
import type { Logger } from './sandbox-service.js';

/** What the timeout service needs from the sandbox lifecycle: the same operations users call. */
export interface TimeoutActions {
  remove(ref: string): Promise<void>;
  stop(ref: string): Promise<unknown>;
  pause(ref: string): Promise<unknown>;
}

export interface TimeoutServiceDeps {
  store: Pick<SandboxStore, 'listExpired'>;
  sandboxes: TimeoutActions;
  log: Logger;
  /** how often the database is asked for expired sandboxes */
  intervalMs?: number;
}

const DEFAULT_INTERVAL_MS = 1_000;

/**
 * Runs each sandbox's onTimeout action (delete or stop) once its timeoutAt has passed. Deadlines live in the
 * database, not in timers, so they survive daemon restarts: a sandbox that expired while the daemon was down is
 * handled at the first tick after it starts. Actions go through the sandbox service (its locks, its cleanup).
 */
export class TimeoutService {
  private timer: NodeJS.Timeout | undefined;
  /** sandboxes whose action is running: a stop takes seconds, longer than a tick */
  private readonly inFlight = new Set<string>();
  private ticking = false;

  constructor(private readonly deps: TimeoutServiceDeps) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops the ticks and waits for the actions already running. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    while (this.ticking || this.inFlight.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  /** One pass: starts the action of every expired sandbox not already being handled. */
  async tick(now = new Date()): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const expired = await this.deps.store.listExpired(now.toISOString());
      await Promise.all(expired.filter((r) => !this.inFlight.has(r.id)).map((r) => this.expire(r)));
    } catch (err) {
      this.deps.log.error({ err: String(err) }, 'timeout check failed');
    } finally {
      this.ticking = false;
    }
  }

  private async expire(rec: SandboxRecord): Promise<void> {
    this.inFlight.add(rec.id);
    try {
      this.deps.log.info(
        { sandbox: rec.id, timeoutAt: rec.timeoutAt, action: rec.onTimeout },
        'sandbox timed out; running its onTimeout action',
      );
      // stop() clears timeoutAt, and remove() deletes the row: either way the sandbox leaves listExpired.
      if (rec.onTimeout === 'pause') await this.deps.sandboxes.pause(rec.id);
      else if (rec.onTimeout === 'stop') await this.deps.sandboxes.stop(rec.id);
      else await this.deps.sandboxes.remove(rec.id);
    } catch (err) {
      // Retried at the next tick (the row still says expired), e.g. after a runtime error.
      this.deps.log.error({ sandbox: rec.id, err: String(err) }, 'onTimeout action failed');
    } finally {
      this.inFlight.delete(rec.id);
    }
  }
}
