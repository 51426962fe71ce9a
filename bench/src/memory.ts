import { readdir, readFile } from 'node:fs/promises';

/**
 * PSS of processes, in KiB, counting each address space once. gVisor's systrap stubs are made with CLONE_VM but
 * not CLONE_THREAD: several pids share one address space, and /proc reports that address space's full PSS for each
 * of them (measured: an idle den sandbox has 12 host processes in 7 address spaces; summing per pid counted ~2x).
 * Processes with byte-identical /proc/<pid>/maps are taken as one address space: distinct ones differ at least in
 * their memfd inodes or addresses.
 */
export async function pssKB(pids: Iterable<string | number>): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  for (const pid of pids) {
    try {
      const maps = await readFile(`/proc/${pid}/maps`, 'utf8');
      const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
      if (seen.has(maps)) continue;
      seen.add(maps);
      total += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    } catch {
      // the process ended while we looked, or is a kernel thread without mappings
    }
  }
  return total;
}

/** Sum of the PSS of every process on the machine, in KiB (address spaces counted once). */
export async function totalPssKB(): Promise<number> {
  return pssKB((await readdir('/proc')).filter((p) => /^\d+$/.test(p)));
}

/** The processes of a cgroup (`/den/<id>` for den's sandboxes), from the v1 memory hierarchy or cgroup v2. */
export async function cgroupPids(path: string): Promise<string[]> {
  for (const root of ['/sys/fs/cgroup/memory', '/sys/fs/cgroup']) {
    try {
      return (await readFile(`${root}${path}/cgroup.procs`, 'utf8')).split('\n').filter(Boolean);
    } catch {
      // not this hierarchy
    }
  }
  throw new Error(`no cgroup ${path}`);
}

export interface IdleMemory {
  /** mean PSS of each sandbox's own host processes (sentry, gofer, stubs; runc: its processes), MiB */
  perSandbox: number;
  /** machine-wide PSS growth per sandbox (daemon growth included; other load on the machine shows up too), MiB */
  machineWide: number;
}

/**
 * Idle memory per sandbox after starting `n` idle sandboxes. `start` returns the cgroup path of what it started.
 * Shared file pages (the node binary, runsc) are split among the processes mapping them, so the figure falls a
 * little as more sandboxes run; both sides of a comparison run the same n.
 */
export async function idleMemoryMiB(n: number, start: () => Promise<string>, settleMs = 3000): Promise<IdleMemory> {
  const before = await totalPssKB();
  const cgroups: string[] = [];
  for (let i = 0; i < n; i++) cgroups.push(await start());
  await new Promise((r) => setTimeout(r, settleMs));
  let own = 0;
  for (const cg of cgroups) own += await pssKB(await cgroupPids(cg));
  const after = await totalPssKB();
  return { perSandbox: own / n / 1024, machineWide: (after - before) / n / 1024 };
}
