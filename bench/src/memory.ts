import { readdir, readFile } from 'node:fs/promises';

/** Sum of the proportional set size (PSS) of every process on the machine, in KiB. */
export async function totalPssKB(): Promise<number> {
  let total = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
      total += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    } catch {
      // the process ended while we looked, or is a kernel thread without mappings
    }
  }
  return total;
}

/**
 * Idle memory per sandbox: machine-wide PSS after starting `n` idle sandboxes minus before, divided by n.
 * Machine-wide (not per-process) so every host process a sandbox costs is counted, daemon growth included.
 */
export async function idlePssPerSandboxMiB(n: number, start: () => Promise<void>, settleMs = 3000): Promise<number> {
  const before = await totalPssKB();
  for (let i = 0; i < n; i++) await start();
  await new Promise((r) => setTimeout(r, settleMs));
  const after = await totalPssKB();
  return (after - before) / n / 1024;
}
