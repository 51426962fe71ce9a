import type { ProcessInfo } from './contract.js';
import type { ManagedProcess } from './managed-process.js';
import { groupAlive, killGroup } from './signals.js';

const RETAIN_ENDED_MS = 10 * 60_000;
const MAX_ENDED = 100;
/** Past this many remembered groups, empty ones are forgotten on the next start. */
const GROUP_SWEEP_THRESHOLD = 256;

/**
 * The processes the agent started. Foreground processes leave when they end; ended background processes stay,
 * with their output, so a client can reconnect and read how they ended, until they are ~10 minutes old or more
 * than 100 have ended.
 *
 * It also remembers every process group it started, so shutdown reaches descendants that outlived their leader
 * (`nohup cmd &` stays in its parent's group).
 */
export class ProcessRegistry {
  private readonly byPid = new Map<number, ManagedProcess>();
  private readonly groups = new Set<number>();
  private pruneTimer: NodeJS.Timeout | undefined;

  add(proc: ManagedProcess): void {
    this.byPid.set(proc.pid, proc);
    if (this.groups.size >= GROUP_SWEEP_THRESHOLD) {
      for (const pgid of this.groups) if (!groupAlive(pgid)) this.groups.delete(pgid);
    }
    this.groups.add(proc.pid);
  }

  get(pid: number): ManagedProcess | undefined {
    this.prune();
    return this.byPid.get(pid);
  }

  /** Called by a process when it ends. */
  readonly ended = (proc: ManagedProcess): void => {
    if (this.byPid.get(proc.pid) !== proc) return;
    if (!proc.background) {
      this.byPid.delete(proc.pid);
      return;
    }
    this.prune();
    this.pruneTimer ??= setTimeout(() => {
      this.pruneTimer = undefined;
      this.prune();
    }, RETAIN_ENDED_MS + 1000).unref();
  };

  list(): ProcessInfo[] {
    this.prune();
    return [...this.byPid.values()].map((p) => p.info());
  }

  runningCount(): number {
    let n = 0;
    for (const p of this.byPid.values()) if (!p.exit) n++;
    return n;
  }

  prune(now = performance.now()): void {
    const ended = [...this.byPid.values()].filter((p) => p.endedAt !== undefined);
    ended.sort((a, b) => (a.endedAt as number) - (b.endedAt as number));
    const excess = ended.length - MAX_ENDED;
    for (const [i, p] of ended.entries()) {
      if (i < excess || now - (p.endedAt as number) > RETAIN_ENDED_MS) this.byPid.delete(p.pid);
    }
  }

  /**
   * SIGTERM to every group started, then SIGKILL to what is left after `graceMs`. Resolves once every tracked
   * process has reported its exit (so attached clients got their EXIT frame) or a short while after the SIGKILL.
   */
  async terminateAll(graceMs: number): Promise<void> {
    const running = (): boolean => [...this.byPid.values()].some((p) => !p.exit);
    for (const pgid of this.groups) killGroup(pgid, 'SIGTERM', true);
    const deadline = performance.now() + graceMs;
    const alive = (): number[] => [...this.groups].filter(groupAlive);
    while (performance.now() < deadline && (running() || alive().length > 0)) await sleep(20);
    for (const pgid of alive()) killGroup(pgid, 'SIGKILL', true);
    const reportDeadline = performance.now() + 500;
    while (performance.now() < reportDeadline && running()) await sleep(10);
    clearTimeout(this.pruneTimer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
