/**
 * The nftables rules of one den network, as `nft -f` scripts. Pure functions: bridge-network.ts applies them.
 *
 * Two tables, both named after den's bridge so several daemons on one host never touch each other's rules:
 * - `inet <bridge>`: input (sandboxes reach only den's DNS resolver on the host), forward (nothing routed into
 *   sandboxes; out of them only what the sandbox's policy chain accepts, never 169.254.0.0/16 or operator-denied
 *   ranges), postrouting (masquerade to the outside). Each sandbox has a chain `sbx_<id>` chosen by its source
 *   address through the verdict map `sandbox_policy`, and for allowlists a set of CIDRs and one of addresses den's
 *   resolver learnt from allowed names (with the DNS TTL as timeout).
 * - `bridge <bridge>`: a frame from a sandbox's port must carry that sandbox's address (no spoofing another
 *   sandbox's policy). Bridge ports are also `isolated`, so sandboxes cannot reach each other at layer 2.
 * Every script is one nft transaction: it applies entirely or not at all. nft 1.0.6 (Debian 12) has no `destroy`,
 * so deletes of things that may be absent are preceded by an `add` of the same thing (for keys and objects; map
 * elements with values are tracked by the caller instead).
 */

export type PolicyKind = 'none' | 'allowlist' | 'full';

export interface NetworkNames {
  bridge: string;
  /** the bridge's address, where den's DNS resolver listens */
  gateway: string;
  subnet: string;
  /** CIDRs sandboxes never reach (169.254.0.0/16 and what the operator adds) */
  deny: string[];
}

export interface SandboxRules {
  id: string;
  address: string;
  /** host end of the sandbox's veth pair */
  hostIf: string;
  policy: PolicyKind;
  /** allowlist CIDRs (a.b.c.d/n) */
  cidrs: string[];
}

const REJECT = 'reject with icmpx type admin-prohibited';

const chainOf = (id: string) => `sbx_${id}`;
const cidrSetOf = (id: string) => `allow_${id}`;
const dnsSetOf = (id: string) => `dns_${id}`;

/** Creates the tables if needed and (re)writes the base chains; sandbox chains, sets and map elements are kept. */
export function baseScript(n: NetworkNames): string {
  const t = `inet ${n.bridge}`;
  const b = `bridge ${n.bridge}`;
  const br = JSON.stringify(n.bridge);
  const deny = n.deny.length ? `ip daddr { ${n.deny.join(', ')} } ${REJECT}` : undefined;
  return [
    `add table ${t}`,
    `add map ${t} sandbox_policy { type ipv4_addr : verdict; }`,
    `add chain ${t} input { type filter hook input priority filter; policy accept; }`,
    `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `flush chain ${t} input`,
    `flush chain ${t} forward`,
    `flush chain ${t} postrouting`,
    `add rule ${t} input iifname ${br} ct state established,related accept`,
    `add rule ${t} input iifname ${br} ip daddr ${n.gateway} meta l4proto { tcp, udp } th dport 53 accept`,
    // Everything else on the host (den's API, its database, sshd, the gateway's other ports) is closed to sandboxes.
    `add rule ${t} input iifname ${br} ${REJECT}`,
    // Replies to what the host or a sandbox started may enter; nothing else is routed into a sandbox.
    `add rule ${t} forward oifname ${br} ct state established,related accept`,
    `add rule ${t} forward oifname ${br} ${REJECT}`,
    `add rule ${t} forward iifname ${br} ct state established,related accept`,
    `add rule ${t} forward iifname ${br} meta nfproto ipv6 drop`,
    ...(deny ? [`add rule ${t} forward iifname ${br} ${deny}`] : []),
    `add rule ${t} forward iifname ${br} ip saddr vmap @sandbox_policy`,
    // A source address that is no sandbox's (cannot pass the bridge table, but rules must not depend on that).
    `add rule ${t} forward iifname ${br} ${REJECT}`,
    `add rule ${t} postrouting ip saddr ${n.subnet} oifname != ${br} masquerade`,
    `add table ${b}`,
    `add set ${b} ports { type ifname; }`,
    `add set ${b} bound { type ifname . ipv4_addr; }`,
    `add chain ${b} prerouting { type filter hook prerouting priority -200; policy accept; }`,
    `flush chain ${b} prerouting`,
    `add rule ${b} prerouting iifname != @ports accept`,
    `add rule ${b} prerouting ether type ip iifname . ip saddr @bound accept`,
    `add rule ${b} prerouting ether type arp iifname . arp saddr ip @bound accept`,
    // IPv6 and frames with any other source: sandboxes are IPv4-only and speak only as themselves.
    `add rule ${b} prerouting drop`,
    '',
  ].join('\n');
}

/** Removes both tables (the daemon stops with no sandbox left). */
export function teardownScript(bridge: string): string {
  return [
    `add table inet ${bridge}`,
    `delete table inet ${bridge}`,
    `add table bridge ${bridge}`,
    `delete table bridge ${bridge}`,
    '',
  ].join('\n');
}

function policyRules(t: string, s: SandboxRules): string[] {
  const chain = chainOf(s.id);
  switch (s.policy) {
    case 'full':
      return [`add rule ${t} ${chain} accept`];
    case 'none':
      return [`add rule ${t} ${chain} ${REJECT}`];
    case 'allowlist':
      return [
        `add rule ${t} ${chain} ip daddr @${cidrSetOf(s.id)} accept`,
        `add rule ${t} ${chain} ip daddr @${dnsSetOf(s.id)} accept`,
        `add rule ${t} ${chain} ${REJECT}`,
      ];
  }
}

/**
 * Adds or replaces everything of one sandbox; learnt DNS addresses are kept unless the policy is no allowlist.
 * `mappedTo` is the chain the policy map sends `s.address` to now (undefined: no element): a map element cannot be
 * re-pointed in place, and `add` of a key with another value fails, so the caller says what is there.
 */
export function sandboxScript(n: NetworkNames, s: SandboxRules, mappedTo: string | undefined): string {
  const t = `inet ${n.bridge}`;
  const b = `bridge ${n.bridge}`;
  const chain = chainOf(s.id);
  const lines = [
    `add chain ${t} ${chain}`,
    `flush chain ${t} ${chain}`,
    `add set ${t} ${cidrSetOf(s.id)} { type ipv4_addr; flags interval; auto-merge; }`,
    `flush set ${t} ${cidrSetOf(s.id)}`,
    `add set ${t} ${dnsSetOf(s.id)} { type ipv4_addr; flags timeout; }`,
  ];
  if (s.policy !== 'allowlist') lines.push(`flush set ${t} ${dnsSetOf(s.id)}`);
  if (s.policy === 'allowlist' && s.cidrs.length) {
    lines.push(`add element ${t} ${cidrSetOf(s.id)} { ${s.cidrs.join(', ')} }`);
  }
  lines.push(...policyRules(t, s));
  if (mappedTo !== chain) {
    if (mappedTo !== undefined) lines.push(`delete element ${t} sandbox_policy { ${s.address} }`);
    lines.push(`add element ${t} sandbox_policy { ${s.address} : jump ${chain} }`);
  }
  lines.push(
    `add element ${b} ports { ${JSON.stringify(s.hostIf)} }`,
    `add element ${b} bound { ${JSON.stringify(s.hostIf)} . ${s.address} }`,
    '',
  );
  return lines.join('\n');
}

/**
 * Removes everything of one sandbox; no error when parts are already gone. `mappedAddresses` are the policy map's
 * keys that point at the sandbox's chain (the chain cannot be deleted while an element refers to it).
 */
export function removeSandboxScript(
  n: NetworkNames,
  s: { id: string; hostIf: string; mappedAddresses: string[]; boundAddress?: string },
): string {
  const t = `inet ${n.bridge}`;
  const b = `bridge ${n.bridge}`;
  const chain = chainOf(s.id);
  const ifname = JSON.stringify(s.hostIf);
  const lines: string[] = [];
  for (const address of s.mappedAddresses) lines.push(`delete element ${t} sandbox_policy { ${address} }`);
  lines.push(`add element ${b} ports { ${ifname} }`, `delete element ${b} ports { ${ifname} }`);
  if (s.boundAddress) {
    lines.push(
      `add element ${b} bound { ${ifname} . ${s.boundAddress} }`,
      `delete element ${b} bound { ${ifname} . ${s.boundAddress} }`,
    );
  }
  lines.push(
    `add chain ${t} ${chain}`,
    `flush chain ${t} ${chain}`,
    `delete chain ${t} ${chain}`,
    `add set ${t} ${cidrSetOf(s.id)} { type ipv4_addr; flags interval; auto-merge; }`,
    `delete set ${t} ${cidrSetOf(s.id)}`,
    `add set ${t} ${dnsSetOf(s.id)} { type ipv4_addr; flags timeout; }`,
    `delete set ${t} ${dnsSetOf(s.id)}`,
    '',
  );
  return lines.join('\n');
}

/** The chain a sandbox's traffic is sent to. */
export function sandboxChain(id: string): string {
  return chainOf(id);
}

/** Parses `nft -j list map inet <table> sandbox_policy`: address -> chain. */
export function parsePolicyMap(json: string): Map<string, string> {
  const out = new Map<string, string>();
  const doc = JSON.parse(json) as { nftables?: { map?: { elem?: [string, { jump?: { target?: string } }][] } }[] };
  for (const item of doc.nftables ?? []) {
    for (const [address, verdict] of item.map?.elem ?? []) {
      if (verdict.jump?.target) out.set(address, verdict.jump.target);
    }
  }
  return out;
}

/**
 * Lets a sandbox reach addresses den's resolver just resolved for an allowed name, for the answer's TTL (at least
 * `minTtlS`: programs cache answers a little longer than the TTL says). A present element is replaced so its
 * timeout is renewed.
 */
export function allowResolvedScript(
  n: NetworkNames,
  id: string,
  entries: { address: string; ttlS: number }[],
  minTtlS = 60,
): string {
  const t = `inet ${n.bridge}`;
  const set = dnsSetOf(id);
  const lines: string[] = [];
  for (const e of entries) {
    const ttl = Math.max(minTtlS, Math.ceil(e.ttlS));
    lines.push(
      `add element ${t} ${set} { ${e.address} timeout 1s }`,
      `delete element ${t} ${set} { ${e.address} }`,
      `add element ${t} ${set} { ${e.address} timeout ${ttl}s }`,
    );
  }
  lines.push('');
  return lines.join('\n');
}
