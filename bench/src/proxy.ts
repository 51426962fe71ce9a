import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { Sandbox } from '@den/sdk';
import { type Summary, summarize } from './stats.js';

const MiB = 1024 * 1024;

/** A Node HTTP server in the sandbox (Debian's node in the base image): `/small` (2 bytes) and `/big` (100 MiB). */
const SERVER = `
const http = require('http');
const chunk = Buffer.alloc(1024 * 1024, 120);
http.createServer((q, r) => {
  if (q.url === '/big') {
    r.writeHead(200, { 'content-length': 100 * chunk.length });
    let left = 100;
    const pump = () => { while (left > 0) { left--; if (!r.write(chunk)) return r.once('drain', pump); } r.end(); };
    return pump();
  }
  r.end('ok');
}).listen(8080, '0.0.0.0');
`;

/**
 * The floor of any relay written in Node: a separate Node process that accepts a connection and pipes it, byte for
 * byte, to the sandbox's server (no HTTP parsing, no routing, no token). Prints its port, then relays until killed.
 */
const BARE_RELAY = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const server = net.createServer((c) => {
  const u = net.connect(Number(port), host);
  c.setNoDelay(true);
  u.setNoDelay(true);
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

async function startBareRelay(host: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', BARE_RELAY, host, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, port: Number(line.toString().trim()) };
}

interface Target {
  host: string;
  port: number;
  headers: Record<string, string>;
}

function get(agent: Agent, t: Target, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: t.host, port: t.port, path, headers: t.headers, agent }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface ProxyFigures {
  /** raw: straight to the sandbox; bareRelay: through BARE_RELAY */
  smallGet: { den: Summary; raw: Summary; bareRelay: Summary };
  download: { den: number; raw: number };
}

/**
 * Preview proxy overhead, side by side in one run: small GETs over a keep-alive connection through den's proxy
 * (host-form preview URL with the token), straight to the sandbox's address (the raw baseline) and through a bare Node
 * relay (what relaying in Node costs at the least), interleaved; then 100 MiB downloads through den and directly
 * (MiB/s, median of `bigRuns`).
 */
export async function proxyOverhead(
  url: string,
  runtime: 'runsc' | 'runc',
  n: number,
  bigRuns = 3,
): Promise<ProxyFigures> {
  const sbx = await Sandbox.create({ url, runtime, memoryMB: 1024, network: { policy: 'none' } });
  try {
    await sbx.files.write('/home/user/bench-server.js', SERVER);
    await sbx.commands.run('node /home/user/bench-server.js', { background: true });
    await sbx.ports.waitFor(8080, { timeoutMs: 30_000 });
    const info = await sbx.info();
    const den = new URL(url);
    const viaProxy: Target = {
      host: den.hostname,
      port: Number(den.port),
      headers: { host: sbx.getHost(8080), 'x-den-preview-token': info.preview.token },
    };
    const direct: Target = { host: info.network.address!, port: 8080, headers: {} };
    const relay = await startBareRelay(direct.host, direct.port);
    const viaRelay: Target = { host: '127.0.0.1', port: relay.port, headers: {} };
    const agents = {
      proxy: new Agent({ keepAlive: true, maxSockets: 1 }),
      direct: new Agent({ keepAlive: true, maxSockets: 1 }),
      relay: new Agent({ keepAlive: true, maxSockets: 1 }),
    };
    try {
      const small = [
        ['proxy', viaProxy],
        ['direct', direct],
        ['relay', viaRelay],
      ] as const;
      const t = { proxy: [] as number[], direct: [] as number[], relay: [] as number[] };
      for (let i = 0; i < 50; i++) {
        for (const [key, target] of small) await get(agents[key], target, '/small');
      }
      for (let i = 0; i < n; i++) {
        for (const [key, target] of small) {
          const t0 = performance.now();
          await get(agents[key], target, '/small');
          t[key].push(performance.now() - t0);
        }
      }
      const rates = { proxy: [] as number[], direct: [] as number[] };
      for (let i = 0; i < bigRuns; i++) {
        for (const [key, target] of [
          ['direct', direct],
          ['proxy', viaProxy],
        ] as const) {
          const t0 = performance.now();
          const bytes = await get(agents[key], target, '/big');
          if (bytes !== 100 * MiB) throw new Error(`${key}: got ${bytes} bytes`);
          rates[key].push(bytes / MiB / ((performance.now() - t0) / 1000));
        }
      }
      return {
        smallGet: { den: summarize(t.proxy), raw: summarize(t.direct), bareRelay: summarize(t.relay) },
        download: { den: summarize(rates.proxy).p50, raw: summarize(rates.direct).p50 },
      };
    } finally {
      for (const agent of Object.values(agents)) agent.destroy();
      relay.child.kill();
    }
  } finally {
    await sbx.kill();
  }
}

/**
 * The daemon's own per-step timings of sandbox starts ("sandbox running" log lines): the network step's own time, and
 * what it added to the start. The network is set up beside the disk (SandboxService.ensureRunning): the start waits for
 * the longer of the two, so without a network it would be shorter by the part of the network step that outlasted the
 * disk step.
 */
export function networkStepTimes(logs: string[], since: number): { own: number[]; added: number[] } {
  const own: number[] = [];
  const added: number[] = [];
  for (const line of logs.slice(since)) {
    if (!line.includes('"sandbox running"')) continue;
    const ms = (JSON.parse(line) as { ms?: { network?: number; disk?: number } }).ms;
    if (typeof ms?.network !== 'number' || typeof ms.disk !== 'number') continue;
    own.push(ms.network);
    added.push(Math.max(0, ms.network - ms.disk));
  }
  return { own, added };
}
