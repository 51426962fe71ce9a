/**
 * A push-to-pull bridge: producers push items (agent output, timers), one consumer iterates. Used to merge an
 * agent stream with keepalive ticks into the async iterable a Connect server-streaming handler returns.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((result: IteratorResult<T>) => void) | undefined;
  private failWaiting: ((err: unknown) => void) | undefined;
  private ended = false;
  private error: unknown;

  push(item: T): void {
    if (this.ended) return;
    const resolve = this.waiting;
    if (resolve) {
      this.waiting = undefined;
      this.failWaiting = undefined;
      resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    const resolve = this.waiting;
    const reject = this.failWaiting;
    this.waiting = undefined;
    this.failWaiting = undefined;
    if (error !== undefined) reject?.(error);
    else resolve?.({ value: undefined, done: true });
  }

  /** Whether the consumer has caught up (nothing queued): keepalives are only sent when idle. */
  get idle(): boolean {
    return this.items.length === 0;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.ended) {
          return this.error !== undefined
            ? Promise.reject(this.error)
            : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** Keepalive-Ping-Interval (seconds) as ms; envd's default when absent is 0 = none. */
export function keepaliveIntervalMs(header: string | null): number {
  const seconds = Number(header ?? '');
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 3600) * 1000 : 0;
}

/**
 * Pushes a keepalive into `queue` whenever it stayed idle for the interval the client asked for (envd's
 * Keepalive-Ping-Interval header); `sent()` marks real output, `stop()` ends it.
 */
export class KeepaliveTicker<T> {
  private lastSent = performance.now();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(queue: EventQueue<T>, header: string | null, make: () => T) {
    const intervalMs = keepaliveIntervalMs(header);
    this.timer =
      intervalMs > 0
        ? setInterval(
            () => {
              if (queue.idle && performance.now() - this.lastSent >= intervalMs) queue.push(make());
            },
            Math.min(intervalMs, 1000),
          )
        : undefined;
  }

  sent(): void {
    this.lastSent = performance.now();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
