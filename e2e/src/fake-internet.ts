import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const dnsPacket = require('dns-packet') as typeof import('dns-packet');

/**
 * A stand-in for the world outside the machine, made of things the test owns (tests never send traffic to real
 * outside addresses):
 * - a network namespace with addresses `web` and `other` (198.18.n.0/29, the benchmarking range) and the metadata
 *   address 169.254.169.254, routed from the host through a veth; an HTTP server on port 80 answers on all of them
 *   with "fake-internet <address it was reached at>";
 * - a DNS server on 127.0.0.1 (den's resolver forwards to it) that knows `*.den-test` names.
 */
export interface FakeInternet {
  web: string;
  other: string;
  metadata: string;
  /** `upstream` for DEN_DNS_UPSTREAMS */
  dnsUpstream: string;
  /** names the DNS server answers, and with which address */
  names: Record<string, string>;
  close(): Promise<void>;
}

let made = 0;

/**
 * `staticDir`: files served under `/static/` (e.g. a bare git repository after `git update-server-info`, which git
 * clones over "dumb" HTTP).
 */
export async function startFakeInternet(opts: { staticDir?: string } = {}): Promise<FakeInternet> {
  const n = (process.pid + made++) % 250;
  const ns = `dtworld${n}`;
  const hostIf = `vtw${n}`;
  const base = `198.18.${n}`;
  const web = `${base}.2`;
  const other = `${base}.3`;
  const metadata = '169.254.169.254';
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let server: ChildProcess | undefined;
  const cleanup = () => {
    server?.kill('SIGKILL');
    try {
      ip('route', 'del', `${metadata}/32`, 'via', web);
    } catch {}
    try {
      ip('netns', 'del', ns);
    } catch {}
  };
  try {
    cleanup();
    ip('netns', 'add', ns);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('addr', 'add', `${base}.1/29`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    for (const a of [`${web}/29`, `${other}/29`, `${metadata}/32`]) ip('-n', ns, 'addr', 'add', a, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'route', 'add', 'default', 'via', `${base}.1`);
    // The host's route for the metadata address points into the test's namespace while the test runs.
    ip('route', 'replace', `${metadata}/32`, 'via', web);
    server = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        '-e',
        `const dir = process.env.FAKE_STATIC_DIR;
         require('node:http').createServer((q, r) => {
           if (dir && q.url.startsWith('/static/')) {
             const file = require('node:path').join(dir, decodeURIComponent(q.url.slice(8).split('?')[0]));
             if (!file.startsWith(dir)) return r.writeHead(403).end();
             return require('node:fs').readFile(file, (err, data) => (err ? r.writeHead(404).end() : r.end(data)));
           }
           r.end('fake-internet ' + q.socket.localAddress);
         }).listen(80, '0.0.0.0', () => console.log('ready'));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FAKE_STATIC_DIR: opts.staticDir ?? '' } },
    );
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', (code) => reject(new Error(`fake internet server exited with ${code}`)));
    });
  } catch (err) {
    cleanup();
    throw err;
  }

  const names: Record<string, string> = {
    'allowed.den-test': web,
    'api.allowed.den-test': web,
    'blocked.den-test': other,
  };
  const dns = createSocket('udp4');
  dns.on('message', (msg, peer) => {
    const q = dnsPacket.decode(msg);
    const question = q.questions?.[0];
    if (!question) return;
    const address = names[question.name.toLowerCase()];
    const answers =
      address && question.type === 'A'
        ? [{ type: 'A' as const, name: question.name, ttl: 30, class: 'IN' as const, data: address }]
        : [];
    const reply = dnsPacket.encode({
      id: q.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (address ? 0 : 3), // 3 = NXDOMAIN
      questions: q.questions,
      answers,
    });
    dns.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => dns.bind(0, '127.0.0.1', resolve));
  const port = dns.address().port;

  return {
    web,
    other,
    metadata,
    dnsUpstream: `127.0.0.1:${port}`,
    names,
    async close() {
      dns.close();
      cleanup();
    },
  };
}
