import { DenError } from '@den/shared';
import { domainAllowed } from './allow-entries.js';
import type { BridgeNetwork } from './bridge-network.js';
import { type DnsDecision, type DnsUpstream, SandboxDnsResolver, systemNameservers } from './dns-resolver.js';

/**
 * den's DNS service for its sandboxes: the resolver on the bridge's address, deciding per query from the asking
 * sandbox's policy (found by source address):
 * - full: forwarded to the upstreams;
 * - allowlist: allowed names are forwarded and their addresses put into the sandbox's nft set before it gets the
 *   answer; other names get NXDOMAIN without leaving the host;
 * - none, or an address that is no running sandbox: REFUSED.
 * Reverse lookups (PTR) of den's own addresses never leave the host either: programs such as Python's http.server
 * ask for the name of 0.0.0.0 at startup, and an unanswered query would stall them for seconds.
 */
export function sandboxDns(
  network: BridgeNetwork,
  upstreams: DnsUpstream[],
  log: { warn(o: object, m?: string): void },
) {
  return new SandboxDnsResolver({
    host: network.gateway,
    port: 53,
    upstreams,
    log,
    decide(client, question): DnsDecision {
      const sandbox = network.lookup(client.address);
      if (!sandbox || sandbox.network.policy === 'none') return { action: 'refuse' };
      if (question.name.endsWith('.in-addr.arpa') || question.name.endsWith('.ip6.arpa')) {
        return sandbox.network.policy === 'full' && !isPrivateReverse(question.name)
          ? { action: 'forward' }
          : { action: 'deny' };
      }
      if (sandbox.network.policy === 'full') return { action: 'forward' };
      if (!domainAllowed(question.name, sandbox.network.allow)) return { action: 'deny' };
      return {
        action: 'forward',
        onAnswer: (addresses) =>
          network.allowResolved(
            sandbox.sandboxId,
            addresses.map((a) => ({ address: a.address, ttlS: a.ttl })),
          ),
      };
    },
  });
}

/** Reverse names of 0.0.0.0/8, 10/8, 127/8, 169.254/16, 172.16/12, 192.168/16 and every IPv6 one. */
function isPrivateReverse(name: string): boolean {
  if (name.endsWith('.ip6.arpa')) return true;
  const octets = name.slice(0, -'.in-addr.arpa'.length).split('.').reverse();
  const [a, b] = [Number(octets[0]), Number(octets[1])];
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b < 32) ||
    (a === 192 && b === 168)
  );
}

/** `host[:port]` entries from the config, or the host's own resolvers. */
export function dnsUpstreams(configured: string[] | undefined): DnsUpstream[] {
  if (!configured?.length) return systemNameservers();
  return configured.map((entry) => {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(entry.trim());
    if (!m) {
      throw new DenError('INVALID_ARGUMENT', `DNS upstream "${entry}" must be an IPv4 address with an optional :port`);
    }
    return { host: m[1]!, port: m[2] ? Number(m[2]) : 53 };
  });
}
