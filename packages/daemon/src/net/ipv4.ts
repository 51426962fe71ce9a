import { DenError } from '@den/shared';

/** IPv4 arithmetic for den's sandbox subnet: addresses as unsigned 32-bit numbers. */

export interface Subnet {
  /** network address, e.g. 10.88.0.0 */
  network: number;
  prefix: number;
  /** the canonical text, e.g. "10.88.0.0/16" */
  cidr: string;
}

export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses "10.88.0.0/16"; the sandbox subnet needs room for a gateway and sandboxes (prefix 8..29). */
export function parseSubnet(text: string): Subnet {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text.trim());
  const addr = m ? parseIPv4(m[1]!) : undefined;
  const prefix = m ? Number(m[2]) : Number.NaN;
  if (addr === undefined || !(prefix >= 8 && prefix <= 29)) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `sandbox subnet "${text}" must be an IPv4 CIDR with a prefix from /8 to /29, for example 10.88.0.0/16`,
    );
  }
  const network = (addr & mask(prefix)) >>> 0;
  if (network !== addr) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `sandbox subnet "${text}" has host bits set: use ${formatIPv4(network)}/${prefix}`,
    );
  }
  return { network, prefix, cidr: `${formatIPv4(network)}/${prefix}` };
}

/** The bridge's own address: the first host of the subnet. */
export function gatewayOf(s: Subnet): number {
  return s.network + 1;
}

export function contains(s: Subnet, addr: number): boolean {
  return (addr & mask(s.prefix)) >>> 0 === s.network;
}

/** The lowest address of the subnet that is not the network, the gateway, the broadcast or in `used`. */
export function firstFree(s: Subnet, used: ReadonlySet<number>): number | undefined {
  const broadcast = s.network + 2 ** (32 - s.prefix) - 1;
  for (let a = gatewayOf(s) + 1; a < broadcast; a++) if (!used.has(a)) return a;
  return undefined;
}
