import { domainToASCII } from 'node:url';
import { DenError } from '@den/shared';
import { formatIPv4, parseIPv4 } from './ipv4.js';

/**
 * Entries of a sandbox's network allow-list: IPv4 addresses and CIDRs (enforced by nftables) and domain names
 * (enforced by den's DNS resolver, which adds the addresses it resolves for an allowed name to the sandbox's set).
 */
export type AllowEntry = { kind: 'cidr'; cidr: string } | { kind: 'domain'; pattern: string };

const EXAMPLES = 'for example 10.0.0.0/8, 192.168.1.10, registry.npmjs.org or *.github.com';
/** RFC 1035 2.3.4: a name is at most 255 octets on the wire, which leaves 253 characters in dotted text. */
const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
/** Letters, digits, hyphens (not at either end) and underscores, which real names such as _acme-challenge use. */
const LABEL = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;

function invalid(entry: string, why: string): DenError {
  return new DenError('INVALID_ARGUMENT', `allow-list entry "${entry}" ${why}`, { entry });
}

/**
 * Parses one allow-list entry into its canonical form:
 * - an IPv4 address becomes a /32 CIDR (`10.1.2.3` -> `10.1.2.3/32`); a CIDR must have its host bits zero;
 * - a domain name is lower-cased (non-ASCII names become their punycode form, which is what DNS carries) and loses
 *   its trailing dot; `*.example.com` allows every name below example.com but not example.com itself.
 * Throws DenError INVALID_ARGUMENT, naming the fix, for anything else (IPv6 included: sandboxes are IPv4-only).
 */
export function parseAllowEntry(s: string): AllowEntry {
  const entry = s.trim();
  if (entry === '') throw invalid(s, `is empty: give an IPv4 address, a CIDR or a domain name, ${EXAMPLES}`);
  if (entry.includes(':')) {
    throw invalid(
      entry,
      'looks like an IPv6 address or a URL: den sandboxes are IPv4-only, give an IPv4 address, CIDR or a bare domain name (no scheme or port)',
    );
  }
  // A name whose last label is numeric is not a valid host name (RFC 3696 2), so digits-and-dots is always an address.
  if (/^[\d./]+$/.test(entry)) return { kind: 'cidr', cidr: parseCidr(entry) };
  return { kind: 'domain', pattern: parseDomainPattern(entry) };
}

function parseCidr(entry: string): string {
  const [addressText = '', prefixText, ...rest] = entry.split('/');
  // inet_aton reads a leading zero as octal (010 = 8), so such text means different addresses to different tools.
  if (rest.length > 0 || /(^|\.)0\d/.test(addressText)) {
    throw invalid(
      entry,
      `is not an IPv4 address or CIDR: write it as a.b.c.d or a.b.c.d/prefix without leading zeros, ${EXAMPLES}`,
    );
  }
  const address = parseIPv4(addressText);
  if (address === undefined) {
    throw invalid(entry, `is not an IPv4 address: each of the four parts must be 0-255, ${EXAMPLES}`);
  }
  const prefix = prefixText === undefined ? 32 : /^\d{1,2}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix >= 0 && prefix <= 32)) throw invalid(entry, 'has an invalid prefix length: use /0 to /32');
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (address & mask) >>> 0;
  if (network !== address) throw invalid(entry, `has host bits set: use ${formatIPv4(network)}/${prefix}`);
  return `${formatIPv4(network)}/${prefix}`;
}

function parseDomainPattern(entry: string): string {
  let name = entry.toLowerCase().replace(/\.$/, '');
  const wildcard = name.startsWith('*.');
  if (wildcard) name = name.slice(2);
  if (name.includes('*')) {
    throw invalid(
      entry,
      'has a wildcard in the wrong place: "*." may only start the name, as in *.github.com (use network "full" to allow every name)',
    );
  }
  // Only non-ASCII names go through the IDNA mapping: it would also accept (and rewrite) ASCII text we reject below.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the range is the definition of ASCII
  if (/[^\x00-\x7f]/.test(name)) name = domainToASCII(name);
  const labels = name.split('.');
  const badLabel = labels.find((l) => l.length > MAX_LABEL_LENGTH || !LABEL.test(l));
  if (name === '' || name.length > MAX_NAME_LENGTH || badLabel !== undefined) {
    throw invalid(
      entry,
      `is not a valid domain name: use letters, digits and hyphens in dot-separated labels of at most 63 characters, ${EXAMPLES}`,
    );
  }
  return wildcard ? `*.${name}` : name;
}

/** Lower-cased, without the trailing dot of a fully qualified name: the form parseAllowEntry gives patterns. */
export function normalizeDomainName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Whether `name` (a queried DNS name) matches one of the patterns returned by parseAllowEntry. */
export function domainAllowed(name: string, patterns: Iterable<string>): boolean {
  const candidate = normalizeDomainName(name);
  for (const pattern of patterns) {
    if (pattern.startsWith('*.')) {
      const suffix = pattern.slice(1); // ".github.com": a proper subdomain ends with it and is longer than it
      if (candidate.endsWith(suffix) && candidate.length > suffix.length) return true;
    } else if (candidate === pattern) {
      return true;
    }
  }
  return false;
}

/** Parses a whole allow-list into de-duplicated CIDRs and domain patterns; the first bad entry throws. */
export function parseAllowList(entries: Iterable<string>): { cidrs: string[]; domains: string[] } {
  const cidrs = new Set<string>();
  const domains = new Set<string>();
  for (const raw of entries) {
    const entry = parseAllowEntry(raw);
    if (entry.kind === 'cidr') cidrs.add(entry.cidr);
    else domains.add(entry.pattern);
  }
  return { cidrs: [...cidrs], domains: [...domains] };
}
