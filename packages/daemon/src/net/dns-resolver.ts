import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { DenError } from '@den/shared';
import dnsPacket, { type DecodedPacket, type Question } from 'dns-packet';
import { normalizeDomainName } from './allow-entries.js';

/**
 * A DNS forwarder for sandboxes. It listens on the bridge gateway (UDP and TCP, same port), identifies the sandbox
 * by the query's source address, and asks `decide` what to do with each question: forward it upstream (after which
 * `onAnswer` receives every A record of the answer BEFORE the sandbox does, so den can open its firewall for those
 * addresses first), answer NXDOMAIN without asking upstream (`deny`), or answer REFUSED (`refuse`).
 */

export interface ResolvedAddress {
  address: string;
  /** seconds, as the upstream answer gave it (may be 0) */
  ttl: number;
}

export type DnsDecision =
  | { action: 'forward'; onAnswer?: (addresses: ResolvedAddress[]) => Promise<void> }
  | { action: 'deny' }
  | { action: 'refuse' };

export interface DnsUpstream {
  host: string;
  port: number;
}

export interface SandboxDnsResolverOptions {
  host: string;
  /** 0 picks a free port (tests); the TCP server then takes the port the UDP socket got */
  port: number;
  /** tried in order: the next one when a query to the previous times out or fails */
  upstreams: DnsUpstream[];
  /** `question.name` is lower-cased and has no trailing dot; `question.type` is e.g. "A", "AAAA" */
  decide(client: { address: string }, question: { name: string; type: string }): DnsDecision | Promise<DnsDecision>;
  log?: { warn(obj: object, msg?: string): void };
  /** per upstream attempt (UDP, and the TCP retry of a truncated answer); default 2000 */
  upstreamTimeoutMs?: number;
}

const DEFAULT_UPSTREAM_TIMEOUT_MS = 2000;
/** `onAnswer` updates nftables; one that hangs must not hold the sandbox's query (or a slot) forever. */
const ON_ANSWER_TIMEOUT_MS = 5000;
/** A TCP client that sends nothing for this long is dropped (RFC 7766 6.2.3 suggests seconds, not minutes). */
const TCP_IDLE_TIMEOUT_MS = 10_000;
/** Queries being worked on at once, over all sandboxes; beyond it new queries are dropped and clients retry. */
const MAX_QUERIES_IN_FLIGHT = 1024;
/** RFC 1035 4.2.1: without EDNS a UDP answer may be at most 512 bytes. */
const CLASSIC_UDP_SIZE = 512;

/** Response codes (RFC 1035 4.1.1) den answers with itself. */
const RCODE = { FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const OPCODE_MASK = 0xf << 11;

type Transport = 'udp' | 'tcp';

/** A client query that decoded as a standard query. */
interface ClientQuery {
  raw: Buffer;
  packet: DecodedPacket;
  client: { address: string };
  transport: Transport;
}

export class SandboxDnsResolver {
  private readonly options: SandboxDnsResolverOptions;
  private readonly upstreamTimeoutMs: number;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly tcpClients = new Set<net.Socket>();
  /** ends an upstream exchange in flight (closing its socket); close() calls them all */
  private readonly abortExchanges = new Set<(err: Error) => void>();
  private inFlight = 0;
  private closed = false;

  constructor(options: SandboxDnsResolverOptions) {
    if (options.upstreams.length === 0) {
      throw new DenError(
        'INVALID_ARGUMENT',
        'the sandbox DNS resolver needs at least one upstream nameserver: add a "nameserver" line to /etc/resolv.conf',
      );
    }
    this.options = options;
    this.upstreamTimeoutMs = options.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
  }

  async start(): Promise<{ port: number }> {
    // With port 0 the kernel picks a free UDP port that may be taken for TCP; another pick usually succeeds.
    const attempts = this.options.port === 0 ? 5 : 1;
    for (let attempt = 1; ; attempt++) {
      const udp = await this.bindUdp(this.options.port);
      const port = udp.address().port;
      try {
        this.tcp = await this.listenTcp(port);
        this.udp = udp;
        return { port };
      } catch (err) {
        await new Promise<void>((resolve) => udp.close(() => resolve()));
        if (attempt >= attempts || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const abort of this.abortExchanges) abort(new Error('the sandbox DNS resolver is closing'));
    for (const socket of this.tcpClients) socket.destroy();
    this.tcpClients.clear();
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    await Promise.all([
      udp && new Promise<void>((resolve) => udp.close(() => resolve())),
      tcp && new Promise<void>((resolve) => tcp.close(() => resolve())),
    ]);
  }

  private bindUdp(port: number): Promise<dgram.Socket> {
    const socket = dgram.createSocket(net.isIPv6(this.options.host) ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, this.options.host, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.options.log?.warn({ err }, 'sandbox DNS resolver: UDP socket error'));
        socket.on('message', (msg, rinfo) => {
          this.handle(msg, { address: unmapIPv4(rinfo.address) }, 'udp', (answer) => {
            if (!this.closed) socket.send(answer, rinfo.port, rinfo.address);
          });
        });
        resolve(socket);
      });
    });
  }

  private listenTcp(port: number): Promise<net.Server> {
    const server = net.createServer((socket) => this.serveTcpClient(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.options.host }, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  }

  /** RFC 7766: each message is preceded by its 2-byte length; a client may send several and get answers in any order. */
  private serveTcpClient(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.tcpClients.add(socket);
    const client = { address: unmapIPv4(socket.remoteAddress ?? '') };
    socket.setTimeout(TCP_IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.tcpClients.delete(socket));
    readFrames(socket, (msg) => {
      this.handle(msg, client, 'tcp', (answer) => {
        if (!socket.destroyed) socket.write(frame(answer));
      });
    });
  }

  /** Answers one client message; never throws (a sandbox must not be able to crash the daemon). */
  private handle(
    raw: Buffer,
    client: { address: string },
    transport: Transport,
    reply: (answer: Buffer) => void,
  ): void {
    if (this.closed || this.inFlight >= MAX_QUERIES_IN_FLIGHT) return;
    let packet: DecodedPacket;
    try {
      packet = dnsPacket.decode(raw);
    } catch {
      return; // malformed: there is no reliable id or question to answer with
    }
    // Responses are dropped rather than answered, so two resolvers can never bounce packets between each other.
    if (packet.flag_qr) return;
    this.inFlight++;
    this.answer({ raw, packet, client, transport })
      .then(reply, (err: unknown) => {
        this.options.log?.warn({ err, client: client.address }, 'sandbox DNS resolver: query failed');
        reply(errorResponse(packet, RCODE.SERVFAIL));
      })
      .catch((err: unknown) => this.options.log?.warn({ err }, 'sandbox DNS resolver: could not send an answer'))
      .finally(() => this.inFlight--);
  }

  private async answer(query: ClientQuery): Promise<Buffer> {
    const { packet } = query;
    if (((packet.flags ?? 0) & OPCODE_MASK) !== 0) return errorResponse(packet, RCODE.NOTIMP);
    const question = packet.questions?.length === 1 ? packet.questions[0] : undefined;
    if (!question) return errorResponse(packet, RCODE.FORMERR);

    const decision = await this.options.decide(query.client, {
      name: normalizeDomainName(question.name),
      type: question.type,
    });
    if (decision.action === 'deny') return errorResponse(packet, RCODE.NXDOMAIN);
    if (decision.action === 'refuse') return errorResponse(packet, RCODE.REFUSED);

    const upstream = await this.forward(query.raw, question);
    if (!upstream) return errorResponse(packet, RCODE.SERVFAIL);
    if (decision.onAnswer) {
      const addresses = addressesOf(upstream.packet);
      if (addresses.length > 0) {
        try {
          await withTimeout(decision.onAnswer(addresses), ON_ANSWER_TIMEOUT_MS, 'onAnswer did not finish');
        } catch (err) {
          // The sandbox must not learn an address its firewall does not let through.
          this.options.log?.warn(
            { err, client: query.client.address, name: question.name },
            'sandbox DNS resolver: could not allow the resolved addresses; answering SERVFAIL',
          );
          return errorResponse(packet, RCODE.SERVFAIL);
        }
      }
    }
    const answer = Buffer.from(upstream.raw);
    answer.writeUInt16BE(packet.id ?? 0, 0);
    if (query.transport === 'udp' && answer.length > udpSizeLimit(packet)) {
      // Too big for the client's UDP buffer: the TC bit makes it ask again over TCP (RFC 1035 4.2.1).
      return encodeResponse(packet, (upstream.packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE);
    }
    return answer;
  }

  /** Asks each upstream in turn; undefined when none gave a usable answer in time. */
  private async forward(raw: Buffer, question: Question): Promise<{ raw: Buffer; packet: DecodedPacket } | undefined> {
    for (const upstream of this.options.upstreams) {
      if (this.closed) return undefined;
      // A fresh random id and (below) a fresh source port per query make off-path answer spoofing impractical.
      const id = randomInt(0, 0x10000);
      const query = Buffer.from(raw);
      query.writeUInt16BE(id, 0);
      try {
        let result = await this.exchangeUdp(upstream, query, id, question);
        if (result.packet.flag_tc) result = await this.exchangeTcp(upstream, query, id, question);
        return result;
      } catch (err) {
        if (!this.closed) {
          this.options.log?.warn(
            { err, upstream: `${upstream.host}:${upstream.port}`, name: question.name },
            'sandbox DNS resolver: upstream did not answer; trying the next',
          );
        }
      }
    }
    return undefined;
  }

  private exchangeUdp(
    upstream: DnsUpstream,
    query: Buffer,
    id: number,
    question: Question,
  ): Promise<{ raw: Buffer; packet: DecodedPacket }> {
    // A connected socket only receives from the upstream, and reports ICMP port-unreachable as an error at once.
    const socket = dgram.createSocket(net.isIPv6(upstream.host) ? 'udp6' : 'udp4');
    return this.exchange(socket, (settle) => {
      socket.on('error', (err) => settle(err));
      socket.on('message', (msg) => {
        const packet = matchingResponse(msg, id, question);
        if (packet) settle(undefined, { raw: msg, packet });
      });
      socket.connect(upstream.port, upstream.host, () => socket.send(query));
    });
  }

  private exchangeTcp(
    upstream: DnsUpstream,
    query: Buffer,
    id: number,
    question: Question,
  ): Promise<{ raw: Buffer; packet: DecodedPacket }> {
    const socket = net.connect({ host: upstream.host, port: upstream.port });
    return this.exchange(socket, (settle) => {
      socket.on('error', (err) => settle(err));
      socket.on('close', () => settle(new Error('upstream closed the TCP connection before answering')));
      socket.on('connect', () => socket.write(frame(query)));
      readFrames(socket, (msg) => {
        const packet = matchingResponse(msg, id, question);
        if (packet) settle(undefined, { raw: msg, packet });
      });
    });
  }

  /** Runs one request/response exchange on `socket` with the upstream timeout; the socket is closed afterwards. */
  private exchange<T>(
    socket: dgram.Socket | net.Socket,
    run: (settle: (err: Error | undefined, value?: T) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const settle = (err: Error | undefined, value?: T) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.abortExchanges.delete(settle);
        closeSocket(socket);
        if (err) reject(err);
        else resolve(value as T);
      };
      const timer = setTimeout(
        () => settle(new Error(`no answer within ${this.upstreamTimeoutMs} ms`)),
        this.upstreamTimeoutMs,
      );
      this.abortExchanges.add(settle);
      try {
        run(settle);
      } catch (err) {
        settle(err as Error);
      }
    });
  }
}

/**
 * The host's nameservers from resolv.conf, port 53. As in glibc (resolv.conf(5)), a missing file or one without
 * nameserver lines means the nameserver on the local machine. The daemon runs in the host's network namespace, so
 * loopback nameservers such as systemd-resolved's 127.0.0.53 are reachable from it.
 */
export function systemNameservers(resolvConfPath = '/etc/resolv.conf'): DnsUpstream[] {
  let text = '';
  try {
    text = readFileSync(resolvConfPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const hosts: string[] = [];
  for (const line of text.split('\n')) {
    const [keyword, address] = line.trim().split(/\s+/);
    if (keyword !== 'nameserver' || !address) continue;
    // fe80::1%eth0: the zone is part of the address for node's sockets too.
    if (net.isIP(address.split('%')[0] ?? '') === 0 || address === '0.0.0.0' || hosts.includes(address)) continue;
    hosts.push(address);
  }
  if (hosts.length === 0) hosts.push('127.0.0.1');
  return hosts.map((host) => ({ host, port: 53 }));
}

/** The response to `query` if `msg` is one (same id and question), else undefined: stray packets are ignored. */
function matchingResponse(msg: Buffer, id: number, question: Question): DecodedPacket | undefined {
  let packet: DecodedPacket;
  try {
    packet = dnsPacket.decode(msg);
  } catch {
    return undefined;
  }
  const q = packet.questions?.[0];
  const matches =
    packet.flag_qr &&
    packet.id === id &&
    packet.questions?.length === 1 &&
    q !== undefined &&
    q.type === question.type &&
    q.class === question.class &&
    q.name.toLowerCase() === question.name.toLowerCase();
  return matches ? packet : undefined;
}

/** Every A record of the answer section: the addresses of the name and of each name in its CNAME chain. */
function addressesOf(packet: DecodedPacket): ResolvedAddress[] {
  const addresses: ResolvedAddress[] = [];
  for (const record of packet.answers ?? []) {
    if (record.type === 'A' && typeof record.data === 'string') {
      addresses.push({ address: record.data, ttl: record.ttl ?? 0 });
    }
  }
  return addresses;
}

/** The largest UDP answer the client accepts: its EDNS payload size (RFC 6891 6.2.5), else 512. */
function udpSizeLimit(query: DecodedPacket): number {
  const opt = query.additionals?.find((record) => record.type === 'OPT');
  const size = opt && 'udpPayloadSize' in opt ? opt.udpPayloadSize : 0;
  return Math.max(CLASSIC_UDP_SIZE, size);
}

/** A header-and-question answer with `rcode`; it keeps the query's opcode and its RD and CD bits. */
function errorResponse(query: DecodedPacket, rcode: number): Buffer {
  const kept = (query.flags ?? 0) & (OPCODE_MASK | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED);
  return encodeResponse(query, kept | dnsPacket.RECURSION_AVAILABLE | rcode);
}

/** A response to `query` carrying only the header (with `flags`, QR aside) and the question. */
function encodeResponse(query: DecodedPacket, flags: number): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: query.id ?? 0,
    flags,
    questions: query.questions ?? [],
  });
}

function frame(msg: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(msg.length);
  return Buffer.concat([length, msg]);
}

/** Splits a TCP stream into DNS messages by their 2-byte length prefixes. */
function readFrames(socket: net.Socket, onMessage: (msg: Buffer) => void): void {
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const length = pending.readUInt16BE(0);
      if (pending.length < 2 + length) break;
      const msg = pending.subarray(2, 2 + length);
      pending = pending.subarray(2 + length);
      onMessage(msg);
    }
  });
}

function closeSocket(socket: dgram.Socket | net.Socket): void {
  if (socket instanceof net.Socket) {
    socket.destroy();
    return;
  }
  try {
    socket.close();
  } catch {
    // already closed
  }
}

/** "::ffff:10.88.0.5" (an IPv4 client of a dual-stack socket) -> "10.88.0.5", so callers can look it up as IPv4. */
function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
