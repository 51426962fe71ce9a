import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupCpuTimeNs, cgroupDirs, cgroupStatLines, readCgroupText } from '../../runtime/cgroups.js';
import { cgroupPath } from '../../runtime/oci-spec.js';
import type { SandboxRecord } from '../../services/ports.js';

/** One measurement of a running sandbox, in E2B's units (bytes; CPU percent of the sandbox's CPU limit). */
export interface SandboxMetricSample {
  timestamp: Date;
  cpuCount: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  memCache: number;
  diskUsed: number;
  diskTotal: number;
}

/** Measures a running sandbox; undefined when there is nothing to measure (its cgroup is gone). */
export interface SandboxMetricsSource {
  sample(rec: SandboxRecord): Promise<SandboxMetricSample | undefined>;
}

/** CPU use is the difference of two readings of the cgroup's CPU time this far apart. */
const CPU_WINDOW_MS = 250;

/**
 * Reads a sandbox's figures from the host: CPU time and memory from its cgroup (`/den/<id>`, which runc and runsc
 * create for the container; cgroup v1 or v2), disk from the filesystem of its persistent disk (`statfs`). Under
 * runsc the cgroup holds the whole gVisor sandbox (sentry and gofer), so its memory includes the guest's memory.
 */
export class CgroupSandboxMetrics implements SandboxMetricsSource {
  /** `diskMount`: where the sandbox's disk (its writable layer) is mounted on the host */
  constructor(private readonly diskMount: (sandboxId: string) => string) {}

  async sample(rec: SandboxRecord): Promise<SandboxMetricSample | undefined> {
    const dirs = await cgroupDirs(cgroupPath(rec.id));
    if (dirs.length === 0) return undefined;
    const before = await cgroupCpuTimeNs(dirs);
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, CPU_WINDOW_MS));
    const after = await cgroupCpuTimeNs(dirs);
    const elapsedNs = Number(process.hrtime.bigint() - t0);
    if (before === undefined || after === undefined) return undefined;
    const memory = await memoryOf(dirs);
    if (!memory) return undefined;
    const disk = await statfs(this.diskMount(rec.id));
    const cpuUsedPct = Math.min(100, Math.max(0, ((after - before) / (elapsedNs * rec.cpus)) * 100));
    return {
      timestamp: new Date(),
      cpuCount: Math.max(1, Math.ceil(rec.cpus)),
      cpuUsedPct: Math.round(cpuUsedPct * 100) / 100,
      memUsed: memory.used,
      memTotal: rec.memoryMB * 1024 * 1024,
      memCache: memory.cache,
      diskUsed: (disk.blocks - disk.bfree) * disk.bsize,
      diskTotal: disk.blocks * disk.bsize,
    };
  }
}

/**
 * Memory in use as container tools count it (the working set: usage minus inactive file pages, which the kernel
 * reclaims first), and the page cache. cgroup v1: memory.usage_in_bytes + memory.stat total_*; v2: memory.current
 * + memory.stat.
 */
async function memoryOf(dirs: string[]): Promise<{ used: number; cache: number } | undefined> {
  for (const dir of dirs) {
    const v1 = await readCgroupText(join(dir, 'memory.usage_in_bytes'));
    const v2 = v1 === undefined ? await readCgroupText(join(dir, 'memory.current')) : undefined;
    const usage = v1 ?? v2;
    if (usage === undefined) continue;
    const stat = cgroupStatLines((await readCgroupText(join(dir, 'memory.stat'))) ?? '');
    const inactiveFile = (v1 !== undefined ? stat.get('total_inactive_file') : stat.get('inactive_file')) ?? 0;
    const cache = (v1 !== undefined ? stat.get('total_cache') : stat.get('file')) ?? 0;
    const total = Number(usage.trim());
    return { used: Math.max(0, total - inactiveFile), cache };
  }
  return undefined;
}
