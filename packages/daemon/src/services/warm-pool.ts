import { DenError, type RuntimeName } from '@den/shared';
import type { Logger, SandboxService } from './sandbox-service.js';

/** How long after a hand-over the pool starts to refill (see WarmPool.start). */
const CLAIM_REFILL_DELAY_MS = 1_000;

/** How many sandboxes of one image and runtime wait booted and unassigned. */
export interface PoolSpec {
  image: string;
  runtime: RuntimeName;
  size: number;
}

/** `base/runc=2,base/runsc=1` (DEN_WARM_POOL) -> specs; sizes 0-64. */
export function parsePoolSpecs(text: string | undefined): PoolSpec[] {
  if (!text?.trim()) return [];
  return text.split(',').map((entry) => {
    const m = /^\s*([a-z0-9][a-z0-9._-]*)\/(runsc|runc)=(\d{1,2})\s*$/.exec(entry);
    const size = m ? Number(m[3]) : Number.NaN;
    if (!m || size > 64) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `warm pool entry "${entry}" must be IMAGE/RUNTIME=COUNT with COUNT 0-64, for example base/runc=2`,
      );
    }
    return { image: m[1]!, runtime: m[2] as RuntimeName, size };
  });
}

/**
 * Keeps N sandboxes per image and runtime booted and unassigned, so a create with default limits is a hand-over
 * instead of a boot (SandboxService.create takes them). Refills in the background after each hand-over and on a
 * timer (a pooled sandbox that died is replaced by reconcile like any other). Pooled sandboxes are rows like any
 * sandbox, so a daemon restart finds them again; `0` (the default) keeps none.
 */
export class WarmPool {
  private timer: NodeJS.Timeout | undefined;
  private claimTimer: NodeJS.Timeout | undefined;
  private filling = false;
  private again = false;

  constructor(
    private readonly sandboxes: SandboxService,
    private readonly specs: PoolSpec[],
    private readonly log: Logger,
  ) {}

  /**
   * Fills (or, when the configured sizes shrank, drains) the pool, then keeps it filled. After a hand-over the
   * refill waits `claimDelayMs`: booting a sandbox takes most of a core for ~0.3 s (runc) to ~1 s (runsc), and whoever
   * just took one usually runs their first commands at once. Measured (bench, pool of one runsc sandbox): create to
   * first exec p50 47-51 ms with the refill at once, 34 ms with it deferred.
   */
  start(intervalMs = 10_000, claimDelayMs = CLAIM_REFILL_DELAY_MS): void {
    this.sandboxes.onPoolClaim(() => {
      // One pending refill covers every hand-over before it (a fill tops up every spec).
      if (this.claimTimer) return;
      this.claimTimer = setTimeout(() => {
        this.claimTimer = undefined;
        this.refill();
      }, claimDelayMs);
      this.claimTimer.unref();
    });
    this.refill();
    if (this.specs.every((s) => s.size === 0)) return;
    this.timer = setInterval(() => this.refill(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.claimTimer);
  }

  /** Starts a fill unless one runs; one that runs fills again when it is done. */
  refill(): void {
    if (this.filling) {
      this.again = true;
      return;
    }
    this.filling = true;
    void this.fill()
      .catch((err: unknown) => this.log.warn({ err: String(err) }, 'warm pool refill failed'))
      .finally(() => {
        this.filling = false;
        if (this.again) {
          this.again = false;
          this.refill();
        }
      });
  }

  /** One sandbox at a time: a 2-core machine must keep serving requests while the pool fills. */
  async fill(): Promise<void> {
    const sizeOf = (image: string, runtime: string) =>
      this.specs.find((s) => s.image === image && s.runtime === runtime)?.size ?? 0;
    const pooled = await this.sandboxes.pooled();
    const kept = new Map<string, number>();
    for (const rec of pooled) {
      const key = `${rec.image}/${rec.runtime}`;
      const n = (kept.get(key) ?? 0) + 1;
      kept.set(key, n);
      if (n > sizeOf(rec.image, rec.runtime)) {
        this.log.info({ sandbox: rec.id, pool: key }, 'warm pool is smaller now; removing a pooled sandbox');
        await this.sandboxes.discardPooled(rec.id);
      }
    }
    for (const spec of this.specs) {
      const have = () =>
        this.sandboxes
          .pooled()
          .then((all) => all.filter((r) => r.image === spec.image && r.runtime === spec.runtime).length);
      while ((await have()) < spec.size) {
        await this.sandboxes.create({ image: spec.image, runtime: spec.runtime }, { pooled: true });
      }
    }
  }
}
