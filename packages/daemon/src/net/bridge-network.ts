import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DenError } from '@den/shared';
import { type CommandStep, command, commandSteps } from '../command.js';
import type {
  NetworkManager,
  NetworkPolicy,
  NetworkPolicyName,
  SandboxNetworkAttachment,
  SandboxNetworkSpec,
} from '../services/ports.js';
import { allSettledOrThrow } from '../settle.js';
import { parseAllowEntry } from './allow-entries.js';
import { contains, firstFree, formatIPv4, gatewayOf, parseIPv4, parseSubnet, type Subnet } from './ipv4.js';
import {
  allowResolvedScript,
  baseScript,
  type NetworkNames,
  parsePolicyMap,
  removeSandboxScript,
  sandboxChain,
  sandboxScript,
  teardownScript,
} from './nft-rules.js';

/** `ip netns add` keeps its namespaces here (bind mounts of /proc/<pid>/ns/net). */
const NETNS_DIR = '/run/netns';
/** Linux interface names are at most 15 bytes. */
const IFNAME_MAX = 15;

export interface BridgeNetworkOptions {
  /** bridge name; also names den's nft tables and prefixes its namespaces, so one per daemon */
  bridge: string;
  /** IPv4 subnet of the sandboxes; the bridge takes the first address */
  subnet: string;
  /** CIDRs no sandbox may reach whatever its policy (169.254.0.0/16 is always added) */
  deny: string[];
  /** directory for the sandbox's generated /etc files (resolv.conf, hosts) */
  filesDir(sandboxId: string): string;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

interface Registered {
  sandboxId: string;
  network: NetworkPolicy;
}

/**
 * Sandbox networks on one Linux bridge: a network namespace per sandbox named `<bridge>-<id>`, a veth pair (host end
 * `<bridge's first letters><id>` on the bridge as an isolated port, sandbox end `eth0`), NAT egress and per-sandbox
 * policy in nftables (nft-rules.ts). The sandbox's address comes from its record, so it survives restarts.
 *
 * runsc takes the address and routes off `eth0` into its own network stack when it boots (RUNTIME-NOTES), so the
 * namespace is rebuilt before every start: setUp is always a fresh namespace. Only a sandbox restored a moment after
 * its pause, whose namespace is still complete, gets just its address and route back (reattach).
 */
export class BridgeNetwork implements NetworkManager {
  readonly bridge: string;
  readonly subnet: Subnet;
  readonly gateway: string;
  private readonly names: NetworkNames;
  /** running sandboxes by address: whom a DNS query or a packet comes from */
  private readonly byAddress = new Map<string, Registered>();
  /**
   * Mirror of the nft map `sandbox_policy` (address -> chain), read at start and kept by every change: only this
   * daemon writes its table, and an element cannot be re-pointed without knowing it is there.
   */
  private policyMap = new Map<string, string>();
  /** serializes changes of the nft table, so the mirror and the kernel never disagree */
  private nftQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: BridgeNetworkOptions) {
    if (!/^[a-z][a-z0-9]{1,7}$/.test(opts.bridge)) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `bridge name "${opts.bridge}" must be 2-8 characters of [a-z0-9] starting with a letter, e.g. den0`,
      );
    }
    this.bridge = opts.bridge;
    this.subnet = parseSubnet(opts.subnet);
    this.gateway = formatIPv4(gatewayOf(this.subnet));
    const deny = ['169.254.0.0/16', ...opts.deny.map((d) => normalizeCidr(d))];
    this.names = { bridge: this.bridge, gateway: this.gateway, subnet: this.subnet.cidr, deny: [...new Set(deny)] };
  }

  // ---- host side: once per daemon ----

  /** Creates the bridge and den's nft tables (idempotent; running sandboxes keep their rules). */
  async start(): Promise<void> {
    await this.checkSubnetIsFree();
    const exists = await linkExists(this.bridge);
    const batch = [
      ...(exists ? [] : [`link add ${this.bridge} type bridge`]),
      // A bridge without an address of its own takes the lowest MAC of its ports, so it would change whenever a
      // sandbox comes or goes, and sandboxes that cached the gateway's old MAC (gVisor keeps it for ~30 s) would lose
      // their route out. A fixed, locally administered MAC per bridge name never changes.
      `link set ${this.bridge} address ${bridgeMac(this.bridge)}`,
      `addr replace ${this.gateway}/${this.subnet.prefix} dev ${this.bridge}`,
      `link set ${this.bridge} up`,
    ];
    await command('ip', ['-batch', '-'], { input: `${batch.join('\n')}\n` });
    // Forwarding is a host-wide switch (off by default on Debian); NAT egress needs it.
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
    await nft(baseScript(this.names));
    this.policyMap = parsePolicyMap(await command('nft', ['-j', 'list', 'map', 'inet', this.bridge, 'sandbox_policy']));
  }

  /** Removes the bridge and den's tables; only when no sandbox of this daemon exists any more. */
  async removeHostNetwork(): Promise<void> {
    await nft(teardownScript(this.bridge));
    if (await linkExists(this.bridge)) await command('ip', ['link', 'del', this.bridge]);
  }

  /** Another interface routing (part of) the subnet would make sandboxes unreachable or hijack that network. */
  private async checkSubnetIsFree(): Promise<void> {
    const routes = JSON.parse(await command('ip', ['-j', '-4', 'route', 'show'])) as { dst: string; dev?: string }[];
    for (const r of routes) {
      if (r.dev === this.bridge || r.dst === 'default') continue;
      const [addr, prefix] = r.dst.split('/');
      const a = parseIPv4(addr ?? '');
      if (a === undefined) continue;
      const other = { network: a, prefix: Number(prefix ?? 32), cidr: r.dst };
      if (contains(this.subnet, a) || contains(other, this.subnet.network)) {
        throw new DenError(
          'INVALID_ARGUMENT',
          `den's sandbox subnet ${this.subnet.cidr} overlaps ${r.dst} on ${r.dev ?? 'another interface'}: ` +
            'choose another with DEN_NETWORK_SUBNET or "network.subnet" in config.json',
        );
      }
    }
  }

  // ---- NetworkManager ----

  normalize(settings: { policy: NetworkPolicyName; allow?: string[] }): NetworkPolicy {
    const allow = settings.allow ?? [];
    if (settings.policy !== 'allowlist') {
      if (allow.length) {
        throw new DenError(
          'INVALID_ARGUMENT',
          `allow entries only apply to policy "allowlist" (got policy "${settings.policy}"): drop them or use --network allowlist`,
        );
      }
      return { policy: settings.policy, allow: [] };
    }
    const entries = allow.map((a) => parseAllowEntry(a));
    const normalized = entries.map((e) => (e.kind === 'cidr' ? e.cidr : e.pattern));
    return { policy: 'allowlist', allow: [...new Set(normalized)] };
  }

  allocateAddress(inUse: Iterable<string>): string {
    const used = new Set<number>();
    for (const a of inUse) {
      const n = parseIPv4(a);
      if (n !== undefined) used.add(n);
    }
    const free = firstFree(this.subnet, used);
    if (free === undefined) {
      throw new DenError(
        'RESOURCE_EXHAUSTED',
        `no free address left in den's sandbox subnet ${this.subnet.cidr}: remove sandboxes or configure a larger subnet`,
      );
    }
    return formatIPv4(free);
  }

  async setUp(spec: SandboxNetworkSpec): Promise<SandboxNetworkAttachment> {
    const ns = this.netnsName(spec.sandboxId);
    const hostIf = this.hostIfName(spec.sandboxId);
    const steps: CommandStep[] = [
      {
        argv: ['ip', '-batch', '-'],
        input: [
          `netns add ${ns}`,
          `link add ${hostIf} type veth peer name eth0 netns ${ns}`,
          `link set ${hostIf} master ${this.bridge}`,
          // Isolated bridge ports forward only to non-isolated ones (the bridge itself): no sandbox-to-sandbox frames.
          `link set ${hostIf} type bridge_slave isolated on`,
          `link set ${hostIf} up`,
          '',
        ].join('\n'),
      },
      { argv: ['ip', '-n', ns, '-batch', '-'], input: this.addressBatch(spec.address) },
    ];
    // A namespace left from an earlier run (runsc emptied its eth0) is replaced; deleting it also deletes its veth.
    // The kernel destroys a deleted namespace (and the veth in it) asynchronously: the host end is deleted by name
    // too, or the next `link add` may find it still there (seen after a daemon crash in the middle of a create).
    if (existsSync(`/sys/class/net/${hostIf}`)) steps.unshift({ argv: ['ip', 'link', 'del', hostIf], optional: true });
    if (await pathInNetnsDir(ns)) steps.unshift({ argv: ['ip', 'netns', 'del', ns] });
    const files = this.writeEtcFiles(spec);
    // The namespace and veth (one shell: one spawn from the daemon, see commandSteps) and the rules at the same time:
    // the rules name the veth, they do not need it to exist, and nothing reaches the sandbox before both are done.
    // Only nft changes queue behind other sandboxes' (changeRules), not the namespace. Measured (bench, same VM): the
    // step went from 61-73 to 49-51 ms p50.
    await allSettledOrThrow([commandSteps(steps), this.adopt(spec)] as const);
    return { netnsPath: join(NETNS_DIR, ns), files: await files };
  }

  /**
   * A sandbox paused with memory a moment ago still has its namespace, veth and rules; runsc only took the address
   * and the routes out of the namespace when the sandbox started. Those are put back (one `ip` call instead of a new
   * namespace, veth and rule set: measured ~25 ms less per resume). The same after a restore that failed, before the
   * fresh boot. A namespace that is not complete is set up anew.
   */
  async reattach(spec: SandboxNetworkSpec): Promise<SandboxNetworkAttachment> {
    const ns = this.netnsName(spec.sandboxId);
    if (!(await pathInNetnsDir(ns)) || !existsSync(`/sys/class/net/${this.hostIfName(spec.sandboxId)}`)) {
      return this.setUp(spec);
    }
    const files = this.writeEtcFiles(spec);
    await command('ip', ['-n', ns, '-batch', '-'], { input: this.addressBatch(spec.address, 'replace') });
    this.byAddress.set(spec.address, { sandboxId: spec.sandboxId, network: spec.network });
    return { netnsPath: join(NETNS_DIR, ns), files: await files };
  }

  /** `ip -batch` lines that give a namespace's eth0 the sandbox's address and the default route via the bridge. */
  private addressBatch(address: string, verb: 'add' | 'replace' = 'add'): string {
    return [
      'link set lo up',
      `addr ${verb} ${address}/${this.subnet.prefix} dev eth0`,
      'link set eth0 up',
      `route ${verb} default via ${this.gateway}`,
      '',
    ].join('\n');
  }

  async adopt(spec: SandboxNetworkSpec): Promise<void> {
    await this.changeRules(async () => {
      const rules = this.rulesOf(spec);
      await nft(rules.script);
      rules.applied();
    });
    this.byAddress.set(spec.address, { sandboxId: spec.sandboxId, network: spec.network });
  }

  /** The nft script of a sandbox given the current map, and the mirror update once it is applied. */
  private rulesOf(spec: SandboxNetworkSpec): { script: string; applied(): void } {
    const rules = {
      id: spec.sandboxId,
      address: spec.address,
      hostIf: this.hostIfName(spec.sandboxId),
      policy: spec.network.policy,
      cidrs: spec.network.allow.filter((a) => /^[\d./]+$/.test(a)),
    };
    return {
      script: sandboxScript(this.names, rules, this.policyMap.get(spec.address)),
      applied: () => this.policyMap.set(spec.address, sandboxChain(spec.sandboxId)),
    };
  }

  async updatePolicy(spec: SandboxNetworkSpec): Promise<void> {
    await this.adopt(spec);
  }

  async tearDown(sandboxId: string, address: string | null): Promise<void> {
    const ns = this.netnsName(sandboxId);
    await this.changeRules(async () => {
      const chain = sandboxChain(sandboxId);
      const mapped = [...this.policyMap].filter(([, c]) => c === chain).map(([a]) => a);
      const script = removeSandboxScript(this.names, {
        id: sandboxId,
        hostIf: this.hostIfName(sandboxId),
        mappedAddresses: mapped,
        ...(address ? { boundAddress: address } : {}),
      });
      // Deleting the namespace deletes its veth pair too.
      const steps: CommandStep[] = (await pathInNetnsDir(ns)) ? [{ argv: ['ip', 'netns', 'del', ns] }] : [];
      const hostIf = this.hostIfName(sandboxId);
      if (existsSync(`/sys/class/net/${hostIf}`)) steps.push({ argv: ['ip', 'link', 'del', hostIf], optional: true });
      await commandSteps([...steps, { argv: ['nft', '-f', '-'], input: script }]);
      for (const a of mapped) this.policyMap.delete(a);
    });
    if (address && this.byAddress.get(address)?.sandboxId === sandboxId) this.byAddress.delete(address);
  }

  /** Runs nft changes one at a time (see policyMap). */
  private changeRules<T>(change: () => Promise<T>): Promise<T> {
    const run = this.nftQueue.then(change, change);
    this.nftQueue = run.catch(() => undefined);
    return run;
  }

  async listOnMachine(): Promise<string[]> {
    const prefix = `${this.bridge}-`;
    let entries: string[];
    try {
      entries = await readdir(NETNS_DIR);
    } catch {
      return [];
    }
    return entries.filter((e) => e.startsWith(prefix)).map((e) => e.slice(prefix.length));
  }

  // ---- for den's DNS resolver ----

  /** The running sandbox that has `address`, with its policy. */
  lookup(address: string): Registered | undefined {
    return this.byAddress.get(address);
  }

  /** Lets a sandbox with an allowlist reach addresses den resolved for it from an allowed name. */
  async allowResolved(sandboxId: string, entries: { address: string; ttlS: number }[]): Promise<void> {
    if (entries.length) await nft(allowResolvedScript(this.names, sandboxId, entries));
  }

  // ---- helpers ----

  netnsName(sandboxId: string): string {
    return `${this.bridge}-${sandboxId}`;
  }

  /** `<bridge>` + as much of the id as fits: unique per daemon (ids are random) and readable in `ip link`. */
  hostIfName(sandboxId: string): string {
    return `${this.bridge}${sandboxId}`.slice(0, IFNAME_MAX);
  }

  private async writeEtcFiles(spec: SandboxNetworkSpec): Promise<{ source: string; destination: string }[]> {
    const dir = this.opts.filesDir(spec.sandboxId);
    await mkdir(dir, { recursive: true });
    const files = {
      // den's resolver on the bridge enforces the policy for names; nothing else answers DNS for a sandbox.
      'resolv.conf': `nameserver ${this.gateway}\noptions timeout:2 attempts:2\n`,
      hosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${spec.address}\t${spec.hostname}\n`,
    };
    for (const [name, text] of Object.entries(files)) {
      await writeFile(join(dir, `${name}.tmp`), text, { mode: 0o644 });
      await rename(join(dir, `${name}.tmp`), join(dir, name));
    }
    return Object.keys(files).map((name) => ({ source: join(dir, name), destination: `/etc/${name}` }));
  }
}

/** 02:xx:xx:xx:xx:xx (locally administered, unicast) from a hash of the bridge name. */
function bridgeMac(bridge: string): string {
  const h = createHash('sha256').update(`den-bridge:${bridge}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

function nft(script: string): Promise<string> {
  return command('nft', ['-f', '-'], { input: script });
}

async function linkExists(name: string): Promise<boolean> {
  try {
    await command('ip', ['link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

async function pathInNetnsDir(name: string): Promise<boolean> {
  try {
    return (await readdir(NETNS_DIR)).includes(name);
  } catch {
    return false;
  }
}

function normalizeCidr(text: string): string {
  const entry = parseAllowEntry(text);
  if (entry.kind !== 'cidr') {
    throw new DenError('INVALID_ARGUMENT', `denied range "${text}" must be an IPv4 CIDR such as 192.168.0.0/16`);
  }
  return entry.cidr;
}
