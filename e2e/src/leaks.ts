import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/**
 * What a daemon home has on the machine right now: mounts under it, loop devices backed by its files, and
 * containers in its runtime roots. Tests assert all of these are empty after deleting their sandboxes.
 */
export function leftovers(home: string): string[] {
  const out: string[] = [];
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(` ${home}/`));
  if (mounts.length) out.push(`${mounts.length} mount(s) under ${home}`);
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(home));
  if (loops.length) out.push(`loop devices: ${loops.join('; ')}`);
  const runsc = process.env.DEN_RUNSC ?? '/var/lib/den/tools/runsc/usr/bin/runsc';
  for (const [bin, name] of [
    [runsc, 'runsc'],
    ['runc', 'runc'],
  ] as const) {
    const root = `${home}/run/${name}`;
    // No state root: nothing was ever created with this runtime. Otherwise `list` must work and be empty.
    if (!existsSync(root)) continue;
    const ids = execFileSync(bin, ['--root', root, 'list', '--quiet'], { encoding: 'utf8' }).trim();
    if (ids) out.push(`${name} containers: ${ids.replace(/\n/g, ' ')}`);
  }
  return out;
}
