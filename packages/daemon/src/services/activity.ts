/**
 * What the daemon sees of each sandbox's use, for idle auto-pause: one-off calls (`touch`: preview requests, exec
 * and file calls) and sessions that are open while they last (`openSession`: exec/PTY streams, envd process and
 * watch streams). Only this daemon's in-memory view: IdleService saves the last activity to the database every few
 * seconds, so an idle clock survives a restart.
 */
export class ActivityTracker {
  private readonly last = new Map<string, number>();
  private readonly sessions = new Map<string, number>();
  /** sandboxes touched since the last `takeTouched` */
  private readonly touched = new Set<string>();

  touch(sandboxId: string, at = Date.now()): void {
    this.last.set(sandboxId, at);
    this.touched.add(sandboxId);
  }

  /** Counts a session as open until the returned function is called (calling it again does nothing). */
  openSession(sandboxId: string): () => void {
    this.sessions.set(sandboxId, (this.sessions.get(sandboxId) ?? 0) + 1);
    this.touch(sandboxId);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      const left = (this.sessions.get(sandboxId) ?? 1) - 1;
      if (left > 0) this.sessions.set(sandboxId, left);
      else this.sessions.delete(sandboxId);
      this.touch(sandboxId);
    };
  }

  hasOpenSession(sandboxId: string): boolean {
    return (this.sessions.get(sandboxId) ?? 0) > 0;
  }

  /** ms since the epoch of the last activity seen by this daemon process, if any */
  lastSeen(sandboxId: string): number | undefined {
    return this.last.get(sandboxId);
  }

  /** The sandboxes touched since the previous call, with their last activity (what is to be saved). */
  takeTouched(): Map<string, number> {
    const out = new Map<string, number>();
    for (const id of this.touched) out.set(id, this.last.get(id)!);
    this.touched.clear();
    return out;
  }

  forget(sandboxId: string): void {
    this.last.delete(sandboxId);
    this.sessions.delete(sandboxId);
    this.touched.delete(sandboxId);
  }
}
