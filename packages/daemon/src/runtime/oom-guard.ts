/**
 * The sandbox-internal OOM killer for runsc, loaded into the agent's Node process with `--import` (oci-spec.ts) from
 * the agent root (agent-root.ts copies this file's compiled output there). It imports only Node built-ins.
 *
 * Why it exists: runsc 0.0~20240729.0 has no OOM killer in its sentry and no `--total-memory` flag (it reports the
 * cgroup limit as MemTotal and enforces nothing). When the guest fills the host memory cgroup, the host OOM killer
 * picks the sentry, the one process that holds all guest memory, and the whole sandbox dies with its agent
 * (measured on the den hosts; killing a systrap stub process instead hangs the sandbox). So the guard keeps guest
 * memory under the sandbox's limit from inside: it polls /proc/meminfo and SIGKILLs the process with the largest
 * RSS (never PID 1 and never the agent) when anonymous plus shared memory passes DEN_OOM_GUARD_MB. The host cgroup
 * limit sits RUNSC_MEMORY_OVERHEAD_MB above it for the sentry's own memory and the guard's reaction time, so the
 * host OOM killer stays the backstop for what the guard cannot free (tmpfs files).
 *
 * Polling adapts to the headroom: a guest process in gVisor allocates at most about 1 MiB per ms (measured with
 * Node filling 1 GiB of buffers on systrap), so the next check comes before the remaining headroom could be used
 * up at that rate.
 */
import { existsSync, readdirSync, readFileSync, writeSync } from 'node:fs';

/** measured worst-case allocation rate inside gVisor (systrap), MiB per millisecond */
export const ALLOC_RATE_MB_PER_MS = 1;
export const MIN_DELAY_MS = 5;
export const MAX_DELAY_MS = 250;

/** Guest memory that only killing (or deleting tmpfs files) frees, in KiB: AnonPages + Shmem of /proc/meminfo. */
export function unreclaimableKB(meminfo: string): number {
  let total = 0;
  for (const line of meminfo.split('\n')) {
    const m = /^(AnonPages|Shmem):\s+(\d+)\s+kB/.exec(line);
    if (m?.[2]) total += Number(m[2]);
  }
  return total;
}

/** Delay until the next check: half the time the fastest allocator needs to use the headroom, within bounds. */
export function nextDelayMs(usedKB: number, limitKB: number): number {
  const headroomMB = Math.max(0, limitKB - usedKB) / 1024;
  return Math.min(MAX_DELAY_MS, Math.max(MIN_DELAY_MS, headroomMB / ALLOC_RATE_MB_PER_MS / 2));
}

export interface ProcessMemory {
  pid: number;
  rssKB: number;
}

/** The process to kill: largest RSS, excluding the protected pids. */
export function pickVictim(processes: ProcessMemory[], protectedPids: Set<number>): ProcessMemory | undefined {
  let victim: ProcessMemory | undefined;
  for (const p of processes) {
    if (protectedPids.has(p.pid)) continue;
    if (!victim || p.rssKB > victim.rssKB) victim = p;
  }
  return victim;
}

function readProcesses(): ProcessMemory[] {
  const out: ProcessMemory[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // statm: size resident shared text lib data dt, in pages
      const resident = Number(readFileSync(`/proc/${name}/statm`, 'utf8').split(' ')[1]);
      if (resident > 0) out.push({ pid: Number(name), rssKB: resident * 4 });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 200);
  } catch {
    return '?';
  }
}

/** Starts the guard in this process; the timer does not keep the process alive. */
export function startGuard(limitMB: number): void {
  const limitKB = limitMB * 1024;
  const protectedPids = new Set([1, process.pid]);
  // A killed process frees its memory only once the sentry has torn it down; until then (at most 1 s) nothing
  // else is killed, so one hog costs one process.
  let dying: { pid: number; until: number } | undefined;
  const tick = (): void => {
    let delay = MAX_DELAY_MS;
    try {
      const used = unreclaimableKB(readFileSync('/proc/meminfo', 'utf8'));
      if (dying && (Date.now() > dying.until || !existsSync(`/proc/${dying.pid}`))) dying = undefined;
      if (used > limitKB && !dying) {
        const victim = pickVictim(readProcesses(), protectedPids);
        if (victim) {
          const cmd = commandOf(victim.pid);
          process.kill(victim.pid, 'SIGKILL');
          dying = { pid: victim.pid, until: Date.now() + 1000 };
          // stderr is the sandbox's agent.log on the host
          writeSync(
            2,
            `den oom-guard: memory ${Math.round(used / 1024)} MiB > limit ${limitMB} MiB: killed pid ${victim.pid} ` +
              `(rss ${Math.round(victim.rssKB / 1024)} MiB): ${cmd}\n`,
          );
        }
        delay = MIN_DELAY_MS;
      } else if (used > limitKB) {
        delay = MIN_DELAY_MS;
      } else {
        delay = nextDelayMs(used, limitKB);
      }
    } catch {
      // /proc unreadable for a moment; try again soon
      delay = MIN_DELAY_MS * 10;
    }
    setTimeout(tick, delay).unref();
  };
  tick();
}

const configured = Number(process.env.DEN_OOM_GUARD_MB);
if (Number.isFinite(configured) && configured > 0) startGuard(configured);
