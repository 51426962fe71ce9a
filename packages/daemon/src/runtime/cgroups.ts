import { readdir, readFile, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Host cgroup helpers used after a runtime's own `delete`: a container whose runtime state is lost or broken (the
 * daemon or runtime killed mid-create, a sandbox process killed by the host OOM killer) can leave its cgroup and
 * processes behind, and `delete` must still leave nothing.
 */

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Every existing directory of cgroup `relPath` (e.g. "/den/<id>") across the mounted hierarchies (v1 and v2). */
export async function cgroupDirs(relPath: string): Promise<string[]> {
  const roots: string[] = [CGROUP_ROOT];
  try {
    for (const e of await readdir(CGROUP_ROOT, { withFileTypes: true })) {
      if (e.isDirectory()) roots.push(join(CGROUP_ROOT, e.name));
    }
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const root of roots) {
    const dir = join(root, relPath);
    try {
      if ((await stat(dir)).isDirectory()) found.push(dir);
    } catch {
      // not in this hierarchy
    }
  }
  return found;
}

async function procsOf(dir: string): Promise<number[]> {
  try {
    const text = await readFile(join(dir, 'cgroup.procs'), 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** Pids of every process in cgroup `relPath`, across hierarchies. */
export async function cgroupProcs(relPath: string): Promise<number[]> {
  const all = new Set<number>();
  for (const dir of await cgroupDirs(relPath)) for (const p of await procsOf(dir)) all.add(p);
  return [...all];
}

/** SIGKILLs every process in cgroup `relPath`, waits for them to go, and removes its directories. */
export async function destroyCgroup(relPath: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = await cgroupProcs(relPath);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (Date.now() > deadline) throw new Error(`processes ${pids.join(',')} in cgroup ${relPath} do not exit`);
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const dir of await cgroupDirs(relPath)) {
    // A cgroup directory is removed with rmdir (its files are virtual); it fails while a task is still exiting.
    for (;;) {
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

/** True when `pid` exists and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  if (pid <= 0) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // state is the field after the parenthesised command name, which may itself contain spaces or parentheses
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export async function readCgroupText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** `key value` lines (memory.stat, cpu.stat) as numbers. */
export function cgroupStatLines(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

/** CPU time of the cgroup in ns: cgroup v1 cpuacct.usage, or v2 cpu.stat usage_usec. */
export async function cgroupCpuTimeNs(dirs: string[]): Promise<number | undefined> {
  for (const dir of dirs) {
    const v1 = await readCgroupText(join(dir, 'cpuacct.usage'));
    if (v1 !== undefined) return Number(v1.trim());
    const v2 = await readCgroupText(join(dir, 'cpu.stat'));
    const usec = v2 === undefined ? undefined : cgroupStatLines(v2).get('usage_usec');
    if (usec !== undefined) return usec * 1000;
  }
  return undefined;
}
