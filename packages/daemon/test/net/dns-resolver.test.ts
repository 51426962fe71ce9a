import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket, { type Answer, type DecodedPacket } from 'dns-packet';
import {
  type DnsDecision,
  type ResolvedAddress,
  SandboxDnsResolver,
  type SandboxDnsResolverOptions,
  systemNameservers,
} from '../../src/net/dns-resolver.js';

/** A fake upstream nameserver on 127.0.0.1 (UDP and TCP on one port) that answers from a fixed zone. */
class FakeUpstream {
  readonly queries: { name: string; type: string; transport: 'udp' | 'tcp' }[] = [];
  /** when set, every UDP answer is empty with the TC bit, so the asker must retry over TCP */
  truncateUdp = false;
  port = 0;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly tcpSockets = new Set<net.Socket>();

  constructor(private readonly zone: Record<string, Answer[]>) {}

  async start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
      const port = udp.address().port;
      const tcp = net.createServer((socket) => this.serveTcp(socket));
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen(port, '127.0.0.1', resolve);
        });
      } catch (err) {
        udp.close();
        if (attempt < 5) continue;
        throw err;
      }
      udp.on('message', (msg, rinfo) => {
        const answer = this.answer(msg, 'udp');
        if (answer) udp.send(answer, rinfo.port, rinfo.address);
      });
      this.udp = udp;
      this.tcp = tcp;
      this.port = port;
      return;
    }
  }

  async close(): Promise<void> {
    for (const socket of this.tcpSockets) socket.destroy();
    await Promise.all([
      new Promise<void>((resolve) => (this.udp ? this.udp.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => (this.tcp ? this.tcp.close(() => resolve()) : resolve())),
    ]);
  }

  private serveTcp(socket: net.Socket): void {
    this.tcpSockets.add(socket);
    socket.on('close', () => this.tcpSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const msg = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + msg.length);
        const answer = this.answer(msg, 'tcp');
        if (answer) socket.write(frame(answer));
      }
    });
  }

  private answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    const query = dnsPacket.decode(msg);
    const question = query.questions?.[0];
    if (!question) return undefined;
    this.queries.push({ name: question.name, type: question.type, transport });
    const records = this.zone[question.name.toLowerCase()];
    const base = { type: 'response' as const, id: query.id, questions: query.questions };
    if (transport === 'udp' && this.truncateUdp) {
      return dnsPacket.encode({ ...base, flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.TRUNCATED_RESPONSE });
    }
    if (!records) return dnsPacket.encode({ ...base, flags: dnsPacket.RECURSION_AVAILABLE | 3 });
    const answers = records.filter((r) => question.type !== 'A' || r.type === 'A' || r.type === 'CNAME');
    return dnsPacket.encode({ ...base, flags: dnsPacket.RECURSION_AVAILABLE, answers });
  }
}

function frame(msg: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(msg.length);
  return Buffer.concat([length, msg]);
}

const A = (name: string, data: string, ttl = 300): Answer => ({ type: 'A', name, data, ttl });

const ZONE: Record<string, Answer[]> = {
  'allowed.test': [A('allowed.test', '192.0.2.10', 120)],
  'www.chain.test': [
    { type: 'CNAME', name: 'www.chain.test', data: 'edge.cdn.test', ttl: 60 },
    { type: 'CNAME', name: 'edge.cdn.test', data: 'pop.cdn.test', ttl: 30 },
    A('pop.cdn.test', '198.51.100.1', 20),
    A('pop.cdn.test', '198.51.100.2', 20),
  ],
  // 40 A records (about 660 bytes): more than a client without EDNS accepts over UDP
  'big.test': Array.from({ length: 40 }, (_, i) => A('big.test', `203.0.113.${i + 1}`)),
};

/** Starts a resolver, runs `fn`, and always closes it. */
async function withResolver(
  options: Partial<SandboxDnsResolverOptions> & Pick<SandboxDnsResolverOptions, 'decide' | 'upstreams'>,
  fn: (port: number) => Promise<void>,
): Promise<void> {
  const resolver = new SandboxDnsResolver({ host: '127.0.0.1', port: 0, ...options });
  const { port } = await resolver.start();
  try {
    await fn(port);
  } finally {
    await resolver.close();
  }
}

function clientFor(port: number): Resolver {
  const client = new Resolver({ timeout: 3000, tries: 1 });
  client.setServers([`127.0.0.1:${port}`]);
  return client;
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, code);
    return true;
  });
}

/** Sends one raw UDP datagram and waits for the first answer (or undefined after `timeoutMs`). */
async function udpExchange(port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  const socket = dgram.createSocket('udp4');
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      socket.on('message', (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      socket.send(msg, port, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

/** Sends queries over one TCP connection and collects `count` answers. */
async function tcpExchange(port: number, msgs: Buffer[], count = msgs.length): Promise<DecodedPacket[]> {
  const socket = net.connect(port, '127.0.0.1');
  try {
    return await new Promise<DecodedPacket[]>((resolve, reject) => {
      const answers: DecodedPacket[] = [];
      let pending = Buffer.alloc(0);
      const timer = setTimeout(() => reject(new Error('no TCP answer in time')), 3000);
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          answers.push(dnsPacket.decode(pending.subarray(2, 2 + pending.readUInt16BE(0))));
          pending = pending.subarray(2 + pending.readUInt16BE(0));
        }
        if (answers.length >= count) {
          clearTimeout(timer);
          resolve(answers);
        }
      });
      socket.write(Buffer.concat(msgs.map(frame)));
    });
  } finally {
    socket.destroy();
  }
}

function query(name: string, id: number, type: 'A' | 'AAAA' = 'A'): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });
}

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

function rcodeOf(packet: DecodedPacket): string | undefined {
  return RCODES[(packet.flags ?? 0) & 0xf];
}

function addressesIn(packet: DecodedPacket | undefined): string[] {
  return (packet?.answers ?? []).flatMap((a) => (a.type === 'A' ? [a.data] : []));
}

const forward: DnsDecision = { action: 'forward' };

describe('SandboxDnsResolver', () => {
  const upstream = new FakeUpstream(ZONE);
  let upstreams: { host: string; port: number }[];

  before(async () => {
    await upstream.start();
    upstreams = [{ host: '127.0.0.1', port: upstream.port }];
  });

  after(async () => {
    await upstream.close();
  });

  it('forwards an allowed name and hands its addresses to onAnswer before the client gets the answer', async () => {
    const events: string[] = [];
    const seen: { client: string; name: string; type: string }[] = [];
    let allowed: ResolvedAddress[] = [];
    const decide: SandboxDnsResolverOptions['decide'] = (client, question) => {
      seen.push({ client: client.address, ...question });
      return {
        action: 'forward',
        onAnswer: async (addresses) => {
          events.push('onAnswer started');
          await new Promise((resolve) => setTimeout(resolve, 200));
          allowed = addresses;
          events.push('onAnswer done');
        },
      };
    };
    await withResolver({ upstreams, decide }, async (port) => {
      const records = await clientFor(port).resolve4('Allowed.Test', { ttl: true });
      events.push('client answered');
      assert.deepEqual(records, [{ address: '192.0.2.10', ttl: 120 }]);
    });
    assert.deepEqual(events, ['onAnswer started', 'onAnswer done', 'client answered']);
    assert.deepEqual(allowed, [{ address: '192.0.2.10', ttl: 120 }]);
    assert.deepEqual(seen, [{ client: '127.0.0.1', name: 'allowed.test', type: 'A' }]);
  });

  it('answers a denied name with NXDOMAIN without asking upstream', async () => {
    const before = upstream.queries.length;
    await withResolver({ upstreams, decide: () => ({ action: 'deny' }) }, async (port) => {
      await rejectsWithCode(clientFor(port).resolve4('allowed.test'), 'ENOTFOUND');
    });
    assert.equal(upstream.queries.length, before);
  });

  it('answers REFUSED when told to refuse', async () => {
    const before = upstream.queries.length;
    await withResolver({ upstreams, decide: () => ({ action: 'refuse' }) }, async (port) => {
      await rejectsWithCode(clientFor(port).resolve4('allowed.test'), 'EREFUSED');
    });
    assert.equal(upstream.queries.length, before);
  });

  it('forwards plainly when there is no onAnswer (network "full"), passing upstream NXDOMAIN on', async () => {
    await withResolver({ upstreams, decide: () => forward }, async (port) => {
      assert.deepEqual(await clientFor(port).resolve4('allowed.test'), ['192.0.2.10']);
      await rejectsWithCode(clientFor(port).resolve4('missing.test'), 'ENOTFOUND');
    });
  });

  it('hands over every A record of a CNAME chain', async () => {
    let allowed: ResolvedAddress[] = [];
    const decide = (): DnsDecision => ({
      action: 'forward',
      onAnswer: async (addresses) => {
        allowed = addresses;
      },
    });
    await withResolver({ upstreams, decide }, async (port) => {
      const records = await clientFor(port).resolve4('www.chain.test');
      assert.deepEqual(records.sort(), ['198.51.100.1', '198.51.100.2']);
    });
    assert.deepEqual(allowed, [
      { address: '198.51.100.1', ttl: 20 },
      { address: '198.51.100.2', ttl: 20 },
    ]);
  });

  it('does not call onAnswer when the answer has no A record', async () => {
    let calls = 0;
    const decide = (): DnsDecision => ({
      action: 'forward',
      onAnswer: async () => {
        calls++;
      },
    });
    await withResolver({ upstreams, decide }, async (port) => {
      await rejectsWithCode(clientFor(port).resolve4('missing.test'), 'ENOTFOUND');
    });
    assert.equal(calls, 0);
  });

  it('answers over TCP, several queries on one connection, with the client query ids', async () => {
    const denyMissing = (_: unknown, q: { name: string }): DnsDecision =>
      q.name === 'allowed.test' ? forward : { action: 'deny' };
    await withResolver({ upstreams, decide: denyMissing }, async (port) => {
      const answers = await tcpExchange(port, [query('allowed.test', 0x1234), query('other.test', 0x4321)]);
      const byId = new Map(answers.map((a) => [a.id, a]));
      assert.equal(rcodeOf(byId.get(0x1234)!), 'NOERROR');
      assert.deepEqual(addressesIn(byId.get(0x1234)), ['192.0.2.10']);
      assert.equal(rcodeOf(byId.get(0x4321)!), 'NXDOMAIN');
    });
  });

  it('keeps the client query id over UDP', async () => {
    await withResolver({ upstreams, decide: () => forward }, async (port) => {
      const raw = await udpExchange(port, query('allowed.test', 0xbeef));
      assert.ok(raw);
      const answer = dnsPacket.decode(raw);
      assert.equal(answer.id, 0xbeef);
      assert.equal(answer.flag_qr, true);
      assert.deepEqual(addressesIn(answer), ['192.0.2.10']);
    });
  });

  it('retries a truncated upstream answer over TCP', async () => {
    upstream.truncateUdp = true;
    const before = upstream.queries.length;
    let allowed: ResolvedAddress[] = [];
    const decide = (): DnsDecision => ({
      action: 'forward',
      onAnswer: async (addresses) => {
        allowed = addresses;
      },
    });
    try {
      await withResolver({ upstreams, decide }, async (port) => {
        assert.deepEqual(await clientFor(port).resolve4('allowed.test'), ['192.0.2.10']);
      });
    } finally {
      upstream.truncateUdp = false;
    }
    assert.deepEqual(
      upstream.queries.slice(before).map((q) => q.transport),
      ['udp', 'tcp'],
    );
    assert.deepEqual(allowed, [{ address: '192.0.2.10', ttl: 120 }]);
  });

  it('sets TC for an answer too big for the UDP client, and gives it whole over TCP', async () => {
    await withResolver({ upstreams, decide: () => forward }, async (port) => {
      const raw = await udpExchange(port, query('big.test', 7));
      assert.ok(raw);
      const truncated = dnsPacket.decode(raw);
      assert.equal(truncated.id, 7);
      assert.equal(truncated.flag_tc, true);
      assert.ok(raw.length <= 512);
      const [whole] = await tcpExchange(port, [query('big.test', 8)]);
      assert.equal(whole?.answers?.length, 40);
      // node's resolver follows the TC bit to TCP by itself
      assert.equal((await clientFor(port).resolve4('big.test')).length, 40);
    });
  });

  it('answers SERVFAIL in bounded time when no upstream answers, and tries the next upstream', async () => {
    // A bound socket that never answers: the timeout path. A closed port: the ICMP port-unreachable path.
    const blackHole = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => blackHole.bind(0, '127.0.0.1', resolve));
    const closedPort = await freeUdpPort();
    const dead = [
      { host: '127.0.0.1', port: blackHole.address().port },
      { host: '127.0.0.1', port: closedPort },
    ];
    const warnings: object[] = [];
    const log = { warn: (obj: object) => warnings.push(obj) };
    try {
      await withResolver({ upstreams: dead, decide: () => forward, upstreamTimeoutMs: 300, log }, async (port) => {
        const started = Date.now();
        await rejectsWithCode(clientFor(port).resolve4('allowed.test'), 'ESERVFAIL');
        assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
      });
      assert.ok(warnings.length >= 2);
      await withResolver(
        { upstreams: [...dead, ...upstreams], decide: () => forward, upstreamTimeoutMs: 300 },
        async (port) => {
          assert.deepEqual(await clientFor(port).resolve4('allowed.test'), ['192.0.2.10']);
        },
      );
    } finally {
      blackHole.close();
    }
  });

  it('answers SERVFAIL when onAnswer throws, and when decide throws', async () => {
    const failing = (): DnsDecision => ({
      action: 'forward',
      onAnswer: async () => {
        throw new Error('nft failed');
      },
    });
    await withResolver({ upstreams, decide: failing, log: { warn: () => {} } }, async (port) => {
      await rejectsWithCode(clientFor(port).resolve4('allowed.test'), 'ESERVFAIL');
    });
    const throwing = (): DnsDecision => {
      throw new Error('no such sandbox');
    };
    await withResolver({ upstreams, decide: throwing, log: { warn: () => {} } }, async (port) => {
      await rejectsWithCode(clientFor(port).resolve4('allowed.test'), 'ESERVFAIL');
    });
  });

  it('drops malformed packets and responses, and keeps serving', async () => {
    let decisions = 0;
    const decide = (): DnsDecision => {
      decisions++;
      return forward;
    };
    await withResolver({ upstreams, decide }, async (port) => {
      assert.equal(await udpExchange(port, Buffer.from('not a dns packet at all'), 300), undefined);
      assert.equal(await udpExchange(port, Buffer.alloc(3), 300), undefined);
      const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'allowed.test' }] });
      assert.equal(await udpExchange(port, response, 300), undefined);
      // a garbage TCP frame, then a good one on the same connection
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(frame(Buffer.from([1, 2, 3, 4, 5])));
      socket.destroy();
      assert.equal(decisions, 0);
      assert.deepEqual(await clientFor(port).resolve4('allowed.test'), ['192.0.2.10']);
      const [answer] = await tcpExchange(port, [Buffer.from([9, 9, 9]), query('allowed.test', 5)], 1);
      assert.equal(answer?.id, 5);
    });
  });

  it('answers FORMERR to a query without a question', async () => {
    await withResolver({ upstreams, decide: () => forward }, async (port) => {
      const raw = await udpExchange(port, dnsPacket.encode({ type: 'query', id: 9, questions: [] }));
      assert.ok(raw);
      assert.equal(rcodeOf(dnsPacket.decode(raw)), 'FORMERR');
    });
  });

  it('closes with queries still waiting for an upstream', async () => {
    const blackHole = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => blackHole.bind(0, '127.0.0.1', resolve));
    try {
      const resolver = new SandboxDnsResolver({
        host: '127.0.0.1',
        port: 0,
        upstreams: [{ host: '127.0.0.1', port: blackHole.address().port }],
        decide: () => forward,
      });
      const { port } = await resolver.start();
      const client = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => client.send(query('allowed.test', 1), port, '127.0.0.1', () => resolve()));
      client.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = Date.now();
      await resolver.close();
      assert.ok(Date.now() - started < 500);
    } finally {
      blackHole.close();
    }
  });
});

async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

describe('systemNameservers', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'den-resolv-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads nameserver lines, port 53, skipping comments, duplicates and junk', async () => {
    const path = join(dir, 'resolv.conf');
    await writeFile(
      path,
      [
        '# generated',
        'search example.com',
        'nameserver 127.0.0.53',
        '  nameserver   10.0.0.2  # trailing',
        'nameserver 10.0.0.2',
        '; nameserver 9.9.9.9',
        'nameserver not-an-ip',
        'nameserver 2001:db8::1',
        'options edns0 trust-ad',
      ].join('\n'),
    );
    assert.deepEqual(systemNameservers(path), [
      { host: '127.0.0.53', port: 53 },
      { host: '10.0.0.2', port: 53 },
      { host: '2001:db8::1', port: 53 },
    ]);
  });

  it('falls back to the local nameserver, as glibc does', async () => {
    const empty = join(dir, 'empty.conf');
    await writeFile(empty, 'search example.com\n');
    assert.deepEqual(systemNameservers(empty), [{ host: '127.0.0.1', port: 53 }]);
    assert.deepEqual(systemNameservers(join(dir, 'missing.conf')), [{ host: '127.0.0.1', port: 53 }]);
  });
});
