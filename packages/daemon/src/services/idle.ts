import type { ActivityTracker } from './activity.js';
import type { SandboxRecord, SandboxStore } from './ports.js';
import type { Logger } from './sandbox-service.js';

export interface IdleServiceDeps {
  store: Pick<SandboxStore, 'list' | 'update'>;
  sandboxes: { pause(ref: string): Promise<unknown> };
  activity: ActivityTracker;
  /** CPU time used by the sandbox so far in ns (its cgroup), undefined when it has no cgroup */
  cpuTimeNs(sandboxId: string): Promise<number | undefined>;
  log: Logger;
  intervalMs: number;
}

/**
 * CPU use above this share of one core counts as activity (a build is not idle). Not lower: an idle gVisor sandbox
 * is not at 0. The 2024 runsc's systrap platform wakes every 400 µs even with nothing to do (gVisor issue 13361,
 * fixed upstream in 2026), which measures 4-6% of a core here for a sandbox running only `sleep` or den's agent,
 * and above 10% over a short window on a loaded host. A build or a test run uses most of a core.
 */
const BUSY_CPU_SHARE = 0.2;
/** CPU use is judged over at least this long, so that short checks do not turn one burst into a verdict. */
const CPU_WINDOW_MS = 1_000;

/**
 * Pauses running sandboxes that have an idle timeout once nothing has used them for that long; the next request
 * wakes them (SandboxService.agentFor, the preview proxy). Activity is what the ActivityTracker saw (requests and
 * open sessions) plus CPU use inside the sandbox measured between two checks. Each check also saves the last
 * activity of touched sandboxes to the database, so the idle clock continues across a daemon restart.
 */
export class IdleService {
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** per sandbox: the CPU reading that opened the current window, and the verdict of the last full window */
  private readonly cpu = new Map<string, { ns: number; at: bigint; busy?: boolean }>();
  private readonly pausing = new Set<string>();

  constructor(private readonly deps: IdleServiceDeps) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    while (this.ticking || this.pausing.size > 0) await new Promise((r) => setTimeout(r, 20));
    await this.saveActivity();
  }

  async tick(now = Date.now()): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const running = (await this.deps.store.list({ state: 'running' })).filter(
        (r) => r.idleTimeoutMs && !r.pooled && r.desiredState === 'running',
      );
      const watched = new Set(running.map((r) => r.id));
      for (const id of this.cpu.keys()) if (!watched.has(id)) this.cpu.delete(id);
      for (const rec of running) {
        const cpuBusy = await this.cpuWasBusy(rec.id);
        if (cpuBusy === true || this.deps.activity.hasOpenSession(rec.id)) {
          this.deps.activity.touch(rec.id, now);
          continue;
        }
        // No CPU figure to judge by yet (the first check after a start or a daemon restart): wait for the next one.
        if (cpuBusy === undefined) continue;
        if (now - lastActivity(rec, this.deps.activity) >= rec.idleTimeoutMs!) void this.pause(rec);
      }
      await this.saveActivity();
    } catch (err) {
      this.deps.log.error({ err: String(err) }, 'idle check failed');
    } finally {
      this.ticking = false;
    }
  }

  /** true: busy in the last full window; false: quiet; undefined: no full window measured yet. */
  private async cpuWasBusy(id: string): Promise<boolean | undefined> {
    const ns = await this.deps.cpuTimeNs(id);
    const at = process.hrtime.bigint();
    if (ns === undefined) return undefined;
    const window = this.cpu.get(id);
    if (!window) {
      this.cpu.set(id, { ns, at });
      return undefined;
    }
    const elapsedNs = Number(at - window.at);
    if (elapsedNs < CPU_WINDOW_MS * 1e6) return window.busy;
    const busy = (ns - window.ns) / elapsedNs > BUSY_CPU_SHARE;
    this.cpu.set(id, { ns, at, busy });
    return busy;
  }

  private async pause(rec: SandboxRecord): Promise<void> {
    if (this.pausing.has(rec.id)) return;
    this.pausing.add(rec.id);
    try {
      this.deps.log.info({ sandbox: rec.id, idleTimeoutMs: rec.idleTimeoutMs }, 'sandbox idle; pausing it');
      await this.deps.sandboxes.pause(rec.id);
      this.cpu.delete(rec.id);
    } catch (err) {
      // Tried again at the next check (e.g. a lifecycle operation was under way).
      this.deps.log.warn({ sandbox: rec.id, err: String(err) }, 'idle pause failed');
    } finally {
      this.pausing.delete(rec.id);
    }
  }

  private async saveActivity(): Promise<void> {
    for (const [id, at] of this.deps.activity.takeTouched()) {
      await this.deps.store.update(id, { lastActivityAt: new Date(at).toISOString() }).catch(() => undefined);
    }
  }
}

/** The latest of: what this daemon saw, what was saved (before a restart), and when the sandbox last started. */
function lastActivity(rec: SandboxRecord, activity: ActivityTracker): number {
  const times = [activity.lastSeen(rec.id), parse(rec.lastActivityAt), parse(rec.startedAt)].filter(
    (t): t is number => t !== undefined,
  );
  return times.length > 0 ? Math.max(...times) : Date.now();
}

function parse(iso: string | null): number | undefined {
  if (!iso) return undefined;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t;
}
