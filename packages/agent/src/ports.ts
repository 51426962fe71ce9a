import { readFile } from 'node:fs/promises';
import type { ListeningSocket, TcpConnection } from './protocol.js';

/** TCP state LISTEN in /proc/net/tcp (include/net/tcp_states.h: TCP_LISTEN = 10). */
const TCP_LISTEN = '0A';

/**
 * The TCP sockets listening in the sandbox, from /proc/net/tcp and tcp6 (the sandbox's own network namespace; gVisor's
 * netstack fills the same files). One entry per port and address, sorted by port.
 */
export async function listeningSockets(procNet = '/proc/net'): Promise<ListeningSocket[]> {
  const found = new Map<string, ListeningSocket>();
  for (const s of await tcpSockets(procNet)) {
    if (s.state !== TCP_LISTEN) continue;
    found.set(`${s.local.address}|${s.local.port}`, { port: s.local.port, address: s.local.address });
  }
  return [...found.values()].sort((a, b) => a.port - b.port || a.address.localeCompare(b.address));
}

/** TCP states by their /proc/net/tcp number (include/net/tcp_states.h). */
const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/** TCP endpoints that are neither listening nor closed: what a gVisor checkpoint cannot save. */
export async function openConnections(procNet = '/proc/net'): Promise<TcpConnection[]> {
  return (await tcpSockets(procNet))
    .filter((s) => s.state !== TCP_LISTEN && s.state !== '07')
    .map((s) => ({
      local: `${s.local.address}:${s.local.port}`,
      remote: `${s.remote.address}:${s.remote.port}`,
      state: TCP_STATES[s.state] ?? s.state,
    }));
}

interface RawSocket {
  state: string;
  local: { address: string; port: number };
  remote: { address: string; port: number };
}

async function tcpSockets(procNet: string): Promise<RawSocket[]> {
  const out: RawSocket[] = [];
  for (const [file, v6] of [
    ['tcp', false],
    ['tcp6', true],
  ] as const) {
    let text: string;
    try {
      text = await readFile(`${procNet}/${file}`, 'utf8');
    } catch {
      continue; // no IPv6 in this sandbox
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = endpoint(fields[1], v6);
      const remote = endpoint(fields[2], v6);
      if (!local || !remote || !fields[3]) continue;
      out.push({ state: fields[3], local, remote });
    }
  }
  return out;
}

function endpoint(field: string | undefined, v6: boolean): { address: string; port: number } | undefined {
  const [addrHex, portHex] = (field ?? '').split(':');
  if (!addrHex || !portHex) return undefined;
  return { address: v6 ? ipv6FromProc(addrHex) : ipv4FromProc(addrHex), port: Number.parseInt(portHex, 16) };
}

/** /proc/net/tcp prints the address as one little-endian 32-bit word: 0100007F = 127.0.0.1. */
function ipv4FromProc(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
}

/** tcp6 prints four little-endian 32-bit words. */
function ipv6FromProc(hex: string): string {
  const groups: string[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    const bytes = word.match(/../g)?.reverse() ?? [];
    groups.push(`${bytes[0]}${bytes[1]}`, `${bytes[2]}${bytes[3]}`);
  }
  const full = groups.map((g) => Number.parseInt(g, 16).toString(16)).join(':');
  if (full === '0:0:0:0:0:0:0:0') return '::';
  if (full === '0:0:0:0:0:0:0:1') return '::1';
  const mapped = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(full);
  if (mapped) {
    const hi = Number.parseInt(mapped[1]!, 16);
    const lo = Number.parseInt(mapped[2]!, 16);
    return `::ffff:${hi >>> 8}.${hi & 255}.${lo >>> 8}.${lo & 255}`;
  }
  return full;
}
