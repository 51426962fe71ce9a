import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

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

/** Network objects of one daemon's sandboxes: namespaces, bridge ports, per-sandbox nft chains. */
export function networkLeftovers(bridge: string): string[] {
  const out: string[] = [];
  const namespaces = existsSync('/run/netns')
    ? readdirSync('/run/netns').filter((n) => n.startsWith(`${bridge}-`))
    : [];
  if (namespaces.length) out.push(`network namespaces: ${namespaces.join(' ')}`);
  if (hostNetworkLeftovers(bridge).length) {
    const ports = execFileSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).trim();
    if (ports) out.push(`ports on ${bridge}: ${ports.split('\n').length}`);
    const chains = tryRun('nft', ['list', 'chains', 'inet', bridge]).match(/chain sbx_\w+/g) ?? [];
    if (chains.length) out.push(`nft chains: ${chains.join(' ')}`);
  }
  return out;
}

/** The bridge and nft tables a daemon makes at start; gone once it stopped with no sandbox left. */
export function hostNetworkLeftovers(bridge: string): string[] {
  const out: string[] = [];
  if (tryRun('ip', ['link', 'show', 'dev', bridge])) out.push(`bridge ${bridge}`);
  for (const family of ['inet', 'bridge']) {
    if (tryRun('nft', ['list', 'table', family, bridge])) out.push(`nft table ${family} ${bridge}`);
  }
  return out;
}

function tryRun(bin: string, args: string[]): string {
  try {
    return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}
