/**
 * PreviewProxy end to end on real sockets: a plain node:http server routes preview requests to the proxy and
 * everything else to a stand-in API handler, exactly as the daemon does; a target server plays the app in the
 * sandbox. Everything listens on 127.0.0.1 port 0.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DenError } from '@den/shared';
import { WebSocket, WebSocketServer } from 'ws';
import { daemonServer as realDaemonServer } from '../../src/http-server.js';
import { PreviewProxy, type PreviewTarget } from '../../src/proxy/preview-proxy.js';

const TOKEN = 'tok-0123456789abcdef';
const MiB = 1024 * 1024;

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  remotePort: number;
}

/** The app in the "sandbox": records what it receives and offers endpoints for each behaviour under test. */
class TargetApp {
  readonly server: Server;
  readonly wss = new WebSocketServer({ noServer: true });
  readonly sockets = new Set<Socket>();
  readonly seen: Seen[] = [];
  readonly gates = new Map<string, () => void>();
  readonly events = new EventTarget();
  port = 0;

  constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 30_000;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    this.server.on('upgrade', (req, socket, head) => {
      this.record(req);
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, binary) => ws.send(data, { binary }));
        this.events.dispatchEvent(new Event('ws-open'));
      });
    });
  }

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Waits until the app signals `name` (it calls `signal(name)`). */
  waitFor(name: string): Promise<void> {
    return new Promise((resolve) => this.events.addEventListener(name, () => resolve(), { once: true }));
  }

  private signal(name: string): void {
    this.events.dispatchEvent(new Event(name));
  }

  private gate(name: string): Promise<void> {
    return new Promise((resolve) => this.gates.set(name, resolve));
  }

  release(name: string): void {
    this.gates.get(name)?.();
  }

  private record(req: IncomingMessage): void {
    this.seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      remotePort: req.socket.remotePort ?? 0,
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.record(req);
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/upload': {
        let bytes = 0;
        let signalled = false;
        req.on('data', (d: Buffer) => {
          bytes += d.length;
          if (!signalled) {
            signalled = true;
            this.signal('upload-started');
          }
        });
        req.on('end', () => res.end(JSON.stringify({ bytes })));
        return;
      }
      case '/download': {
        const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('mib')) * MiB;
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size });
        const chunk = Buffer.alloc(64 * 1024, 7);
        let sent = 0;
        const pump = () => {
          while (sent < size) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      case '/gated-download': {
        // Chunked (no Content-Length): the first part, then the rest only after the client confirms receipt.
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.write(Buffer.alloc(1000, 1));
        void this.gate('download').then(() => res.end(Buffer.alloc(1000, 2)));
        return;
      }
      case '/sse': {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
        res.write('data: first\n\n');
        void this.gate('sse').then(() => res.end('data: last\n\n'));
        return;
      }
      case '/hang': {
        res.once('close', () => this.signal(res.writableFinished ? 'hang-finished' : 'hang-aborted'));
        this.signal('hang-received');
        return;
      }
      case '/cut': {
        res.writeHead(200, { 'Content-Length': 10_000 });
        res.write(Buffer.alloc(100));
        setTimeout(() => req.socket.destroy(), 50);
        return;
      }
      case '/cookie': {
        res.writeHead(200, { 'Set-Cookie': ['app=1; Path=/', 'other=2; Path=/'], 'Content-Type': 'text/plain' });
        res.end('ok');
        return;
      }
      default:
        res.writeHead(200, { 'Content-Type': 'application/json', Connection: 'keep-alive', 'X-App': 'yes' });
        res.end(JSON.stringify({ url: req.url, host: req.headers.host }));
    }
  }

  async stop(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

/**
 * The daemon's real HTTP server (http-server.ts) with stand-ins for what the daemon plugs into it: an API that
 * echoes what it received, E2B's envd on `49983-<id>` hosts, and an upgrade listener (the API's WebSocket routes;
 * Node only treats a request as an upgrade when the server has one).
 */
function daemonServer(proxy: PreviewProxy): Server {
  const envd = {
    matches: (req: Pick<IncomingMessage, 'url' | 'headers'>) => req.headers.host?.startsWith('49983-') === true,
    handle: (req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ envd: true, url: req.url }));
    },
    close: () => {},
  };
  const server = realDaemonServer(
    proxy,
    envd,
  )((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ api: true, url: req.url }));
  });
  server.on('upgrade', (_req: IncomingMessage, socket: Socket) => socket.destroy());
  return server;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

for (const fastLane of [true, false]) {
  describe(`PreviewProxy (${fastLane ? 'fast lane for host-form previews' : 'full proxy only'})`, {
    concurrency: false,
  }, () => {
    const app = new TargetApp();
    let closedPort = 0;
    let proxy: PreviewProxy;
    let daemon: Server;
    let daemonPort = 0;
    const warnings: object[] = [];
    // One keep-alive connection per Host, as browsers keep one per origin: the fast lane relays a client connection
    // to one preview, and hands a connection that changes preview to the full proxy.
    const agents = new Map<string | undefined, http.Agent>();
    const agentFor = (host: string | undefined) => {
      let agent = agents.get(host);
      if (!agent) {
        agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        agents.set(host, agent);
      }
      return agent;
    };
    const extra: (() => void | Promise<void>)[] = [];

    const targets = (): Record<string, PreviewTarget> => ({
      'my-app-1': { sandboxId: 'sbx1', address: '127.0.0.1', port: app.port, token: TOKEN },
      abcdefghij0123456789: { sandboxId: 'sbx2', address: '127.0.0.1', port: app.port, token: null },
      'no-server': { sandboxId: 'sbx3', address: '127.0.0.1', port: closedPort, token: null },
    });

    const newProxy = (options: { responseTimeoutMs?: number } = {}) =>
      new PreviewProxy({
        domain: 'preview.test',
        log: { warn: (o) => warnings.push(o) },
        fastLane: fastLane && { reserved: (head) => head.headers.host?.startsWith('49983-') === true },
        ...options,
        resolver: {
          async resolve(ref) {
            if (ref === 'stopped') throw new DenError('SANDBOX_NOT_RUNNING', 'sandbox stopped is stopped; start it');
            const target = targets()[ref];
            if (!target) throw new DenError('SANDBOX_NOT_FOUND', `no sandbox ${ref}`);
            return target;
          },
        },
      });

    async function listen(server: Server): Promise<number> {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return (server.address() as AddressInfo).port;
    }

    function send(
      path: string,
      headers: Record<string, string> = {},
      options: { method?: string; body?: Buffer | string; port?: number; agent?: http.Agent } = {},
    ): Promise<Reply> {
      return new Promise((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: options.port ?? daemonPort,
            path,
            method: options.method ?? 'GET',
            headers,
            agent: options.agent ?? agentFor(headers.host),
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (d: Buffer) => chunks.push(d));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
            );
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(options.body);
      });
    }

    const host = (ref: string, port = app.port) => ({ host: `${port}-${ref}.preview.test:${daemonPort}` });
    const privateHost = () => host('my-app-1');
    const publicHost = () => host('abcdefghij0123456789');

    before(async () => {
      await app.start();
      const probe = http.createServer();
      closedPort = await listen(probe);
      probe.close();
      proxy = newProxy();
      daemon = daemonServer(proxy);
      daemonPort = await listen(daemon);
    });

    after(async () => {
      for (const agent of agents.values()) agent.destroy();
      for (const cleanup of extra) await cleanup();
      proxy.close();
      daemon.closeAllConnections();
      daemon.close();
      await app.stop();
    });

    it('routes the host form (hyphenated name, daemon port in Host) and keeps the Host header', async () => {
      const r = await send('/hello?x=1', { ...privateHost(), 'X-Den-Preview-Token': TOKEN });
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { url: '/hello?x=1', host: privateHost().host });
      assert.equal(r.headers['x-app'], 'yes');
      const seen = app.seen.at(-1)!;
      assert.equal(seen.headers['x-forwarded-host'], privateHost().host);
      assert.equal(seen.headers['x-forwarded-proto'], 'http');
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(seen.headers['x-den-preview-token'], undefined, 'the token header is not forwarded');
    });

    it('routes the path form and leaves other requests to the API handler', async () => {
      const r = await send(`/proxy/abcdefghij0123456789/${app.port}/deep/path?q=2`, { host: 'localhost' });
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).url, '/deep/path?q=2');
      const api = await send('/v1/health', { host: `localhost:${daemonPort}` });
      assert.deepEqual(JSON.parse(api.body), { api: true, url: '/v1/health' });
    });

    it('redirects the path form without a slash after the port (308, query kept)', async () => {
      const r = await send(`/proxy/my-app-1/${app.port}?a=1`);
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, `/proxy/my-app-1/${app.port}/?a=1`);
    });

    it('removes hop-by-hop headers in both directions (RFC 9110 §7.6.1)', async () => {
      await send('/hop', {
        ...publicHost(),
        Connection: 'keep-alive, X-Secret-Hop',
        'X-Secret-Hop': '1',
        TE: 'trailers',
      });
      const seen = app.seen.at(-1)!;
      assert.equal(seen.headers['x-secret-hop'], undefined);
      assert.equal(seen.headers.te, undefined);
      // The full proxy owns the client's connection, so the client sees the daemon's own Keep-Alive hint. In the fast
      // lane the client's connection lives exactly as long as the app's, so the app's own connection fields reach
      // the client (this app sends `Connection: keep-alive` and no hint).
      const r = await send('/hop', publicHost());
      assert.equal(r.headers['keep-alive'], fastLane ? undefined : 'timeout=65');
    });

    it('reuses a pooled keep-alive connection to the target', async () => {
      proxy.dropConnections('sbx2');
      // In the fast lane, dropping the connections into the sandbox also cuts the client connections relayed to them.
      const fresh = new http.Agent({ keepAlive: true, maxSockets: 1 });
      extra.push(() => fresh.destroy());
      await send('/one', publicHost(), { agent: fresh });
      await send('/two', publicHost(), { agent: fresh });
      const [a, b] = app.seen.slice(-2);
      assert.equal(a!.remotePort, b!.remotePort, 'both requests came over the same upstream socket');
      // The fast lane holds one connection per client connection (a tunnel); the full proxy pools them.
      assert.deepEqual(
        proxy.connectionCount('sbx2'),
        fastLane ? { idle: 0, active: 0, tunnels: 1 } : { idle: 1, active: 0, tunnels: 0 },
      );
    });

    it('streams a large upload without buffering it', async () => {
      const started = app.waitFor('upload-started');
      const result = new Promise<Reply>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port: daemonPort, path: '/upload', method: 'POST', headers: publicHost() },
          (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
          },
        );
        req.on('error', reject);
        req.write(Buffer.alloc(64 * 1024, 1));
        // The app sees the first chunk while the client still holds the rest: nothing waits for the whole body.
        void started.then(async () => {
          const chunk = Buffer.alloc(MiB, 2);
          for (let i = 0; i < 64; i++) if (!req.write(chunk)) await once(req, 'drain');
          req.end();
        });
      });
      const r = await result;
      assert.equal(JSON.parse(r.body).bytes, 64 * 1024 + 64 * MiB);
    });

    it('streams a large download with bounded memory', async () => {
      const rssBefore = process.memoryUsage().rss;
      let peak = rssBefore;
      const r = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: daemonPort, path: '/download?mib=256', headers: publicHost() }, (res) => {
            let bytes = 0;
            res.on('data', (d: Buffer) => {
              bytes += d.length;
              peak = Math.max(peak, process.memoryUsage.rss());
            });
            res.on('end', () => resolve(bytes));
          })
          .on('error', reject);
      });
      assert.equal(r, 256 * MiB);
      // Target, proxy and client share this process; buffering the body anywhere would add hundreds of MiB.
      assert.ok(peak - rssBefore < 100 * MiB, `rss grew by ${((peak - rssBefore) / MiB).toFixed(0)} MiB`);
    });

    it('passes a chunked response through as it arrives', async () => {
      const chunks: Buffer[] = [];
      const done = new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: daemonPort, path: '/gated-download', headers: publicHost() }, (res) => {
            assert.equal(res.headers['transfer-encoding'], 'chunked');
            res.on('data', (d: Buffer) => {
              chunks.push(d);
              if (chunks.length === 1) app.release('download');
            });
            res.on('end', resolve);
          })
          .on('error', reject);
      });
      await done;
      assert.equal(Buffer.concat(chunks).length, 2000);
    });

    it('delivers Server-Sent Events before the stream ends', async () => {
      let text = '';
      await new Promise<void>((resolve, reject) => {
        http
          .get(
            {
              host: '127.0.0.1',
              port: daemonPort,
              path: '/sse',
              headers: { ...publicHost(), Accept: 'text/event-stream' },
            },
            (res) => {
              assert.equal(res.headers['content-type'], 'text/event-stream');
              res.setEncoding('utf8');
              res.on('data', (d: string) => {
                text += d;
                if (text === 'data: first\n\n') app.release('sse');
              });
              res.on('end', resolve);
            },
          )
          .on('error', reject);
      });
      assert.equal(text, 'data: first\n\ndata: last\n\n');
    });

    it('proxies a WebSocket: echo, then close propagates', async () => {
      const tunnelsBefore = proxy.connectionCount('sbx1').tunnels;
      const ws = new WebSocket(`ws://127.0.0.1:${daemonPort}/socket?den_preview_token=${TOKEN}`, {
        headers: privateHost(),
      });
      await once(ws, 'open');
      assert.equal(app.seen.at(-1)!.url, '/socket', 'the token parameter is stripped');
      assert.equal(app.seen.at(-1)!.headers['x-forwarded-proto'], 'http');
      ws.send('hello');
      const [echo] = await once(ws, 'message');
      assert.equal(String(echo), 'hello');
      assert.equal(proxy.connectionCount('sbx1').tunnels, tunnelsBefore + 1);
      const serverSide = [...app.wss.clients][0]!;
      const serverClosed = once(serverSide, 'close');
      ws.close(1000, 'bye');
      const [code] = await serverClosed;
      assert.equal(code, 1000);
      await once(ws, 'close');
    });

    it('accepts the token in the header, the E2B header, the query (sets a cookie) and the cookie', async () => {
      assert.equal((await send('/', { ...privateHost(), 'X-Den-Preview-Token': TOKEN })).status, 200);
      assert.equal((await send('/', { ...privateHost(), 'e2b-traffic-access-token': TOKEN })).status, 200);

      const viaQuery = await send(`/page?a=1&den_preview_token=${TOKEN}`, privateHost());
      assert.equal(viaQuery.status, 200);
      assert.equal(app.seen.at(-1)!.url, '/page?a=1');
      const cookie = viaQuery.headers['set-cookie']?.[0] ?? '';
      assert.match(cookie, new RegExp(`^den_preview_token=${TOKEN}; Path=/; HttpOnly; SameSite=Lax$`));

      const viaCookie = await send('/next', { ...privateHost(), Cookie: `app=1; ${cookie.split(';')[0]}` });
      assert.equal(viaCookie.status, 200);
      assert.equal(app.seen.at(-1)!.headers.cookie, 'app=1', 'the token cookie is not forwarded');
      assert.equal(viaCookie.headers['set-cookie'], undefined);
    });

    it('scopes the query-token cookie to the preview path in the path form and keeps app cookies', async () => {
      const r = await send(`/proxy/my-app-1/${app.port}/cookie?den_preview_token=${TOKEN}`);
      assert.equal(r.status, 200);
      assert.deepEqual(r.headers['set-cookie'], [
        'app=1; Path=/',
        'other=2; Path=/',
        `den_preview_token=${TOKEN}; Path=/proxy/my-app-1/${app.port}/; HttpOnly; SameSite=Lax`,
      ]);
    });

    it('answers 401 without a token and 403 with a wrong one; public previews need none', async () => {
      const missing = await send('/', privateHost());
      assert.equal(missing.status, 401);
      assert.equal(JSON.parse(missing.body).code, 'UNAUTHORIZED');
      assert.match(JSON.parse(missing.body).message, /den_preview_token/);
      const html = await send('/', { ...privateHost(), Accept: 'text/html,application/xhtml+xml' });
      assert.equal(html.status, 401);
      assert.match(html.headers['content-type'] ?? '', /^text\/html/);
      assert.match(html.body, /private/);
      const wrong = await send('/', { ...privateHost(), 'X-Den-Preview-Token': 'nope' });
      assert.equal(wrong.status, 403);
      assert.equal(JSON.parse(wrong.body).code, 'PERMISSION_DENIED');
      assert.equal((await send('/', publicHost())).status, 200);
      const ws = new WebSocket(`ws://127.0.0.1:${daemonPort}/socket`, { headers: privateHost() });
      ws.on('error', () => {});
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
      assert.equal(res.statusCode, 401);
      res.resume();
      ws.terminate();
    });

    it('explains unknown sandboxes (404), stopped ones (409) and closed ports (502), as HTML or JSON', async () => {
      const unknown = await send('/', host('nope'));
      assert.equal(unknown.status, 404);
      assert.deepEqual(JSON.parse(unknown.body), { code: 'SANDBOX_NOT_FOUND', message: 'no sandbox nope' });
      const stopped = await send('/', { ...host('stopped'), Accept: 'text/html' });
      assert.equal(stopped.status, 409);
      assert.match(stopped.body, /SANDBOX_NOT_RUNNING/);
      const closedJson = await send(`/proxy/no-server/${closedPort}/`);
      assert.equal(closedJson.status, 502);
      assert.deepEqual(JSON.parse(closedJson.body), {
        code: 'PORT_NOT_LISTENING',
        message: `nothing is listening on port ${closedPort} in sandbox no-server; start your server bound to 0.0.0.0`,
      });
      const closedHtml = await send(`/proxy/no-server/${closedPort}/`, { Accept: 'text/html' });
      assert.equal(closedHtml.status, 502);
      assert.match(closedHtml.headers['content-type'] ?? '', /^text\/html/);
      assert.match(closedHtml.body, /nothing is listening on port \d+ in sandbox no-server/);
    });

    it('answers 504 when the app sends no response in time', async () => {
      const slowProxy = newProxy({ responseTimeoutMs: 200 });
      const server = daemonServer(slowProxy);
      const port = await listen(server);
      extra.push(() => {
        slowProxy.close();
        server.closeAllConnections();
        server.close();
      });
      const r = await send('/hang', publicHost(), { port });
      assert.equal(r.status, 504);
      assert.equal(JSON.parse(r.body).code, 'PREVIEW_TIMEOUT');
    });

    it('aborts the upstream request when the client goes away', async () => {
      const received = app.waitFor('hang-received');
      const aborted = app.waitFor('hang-aborted');
      const req = http.get({ host: '127.0.0.1', port: daemonPort, path: '/hang', headers: publicHost() });
      req.on('error', () => {});
      await received;
      req.destroy();
      await aborted;
    });

    it('cuts the client response when the app cuts its own', async () => {
      const outcome = await new Promise<string>((resolve) => {
        http
          .get({ host: '127.0.0.1', port: daemonPort, path: '/cut', headers: publicHost() }, (res) => {
            res.on('data', () => {});
            res.on('end', () => resolve('ended'));
            res.on('error', () => resolve('error'));
            res.on('aborted', () => resolve('aborted'));
          })
          .on('error', () => resolve('error'));
      });
      assert.notEqual(outcome, 'ended', 'a truncated body must not look complete');
    });

    it('dropConnections closes pooled and upgraded connections to that sandbox only', async () => {
      await send('/warm', publicHost());
      await send('/warm', { ...privateHost(), 'X-Den-Preview-Token': TOKEN });
      const warm = proxy.connectionCount('sbx2');
      assert.ok(warm.idle + warm.tunnels >= 1);
      const ws = new WebSocket(`ws://127.0.0.1:${daemonPort}/socket`, { headers: publicHost() });
      await once(ws, 'open');
      assert.equal(proxy.connectionCount('sbx2').tunnels, warm.tunnels + 1);
      const appSocketsBefore = app.sockets.size;

      const wsClosed = once(ws, 'close');
      proxy.dropConnections('sbx2');
      await wsClosed;
      assert.deepEqual(proxy.connectionCount('sbx2'), { idle: 0, active: 0, tunnels: 0 });
      const other = proxy.connectionCount('sbx1');
      assert.ok(other.idle + other.tunnels >= 1, 'other sandboxes keep their connections');
      // The app sees the pooled or relayed connections and the WebSocket go away.
      const gone = warm.idle + warm.tunnels + 1;
      for (let i = 0; i < 50 && app.sockets.size > appSocketsBefore - gone; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(app.sockets.size, appSocketsBefore - gone);
      const fresh = new http.Agent({ keepAlive: true, maxSockets: 1 });
      extra.push(() => fresh.destroy());
      const again = await send('/again', publicHost(), { agent: fresh });
      assert.equal(again.status, 200, 'new requests open new connections');
    });

    it('rewrites every request head on a kept-alive connection, bodies with a Content-Length included', async () => {
      const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
      extra.push(() => one.destroy());
      const headers = { ...privateHost(), 'X-Den-Preview-Token': TOKEN, 'X-Forwarded-For': '10.9.9.9' };
      for (let i = 0; i < 3; i++) {
        const r = await send(`/upload?i=${i}`, headers, { method: 'POST', body: 'x'.repeat(100_000 + i), agent: one });
        assert.equal(JSON.parse(r.body).bytes, 100_000 + i);
        const seen = app.seen.at(-1)!;
        assert.equal(seen.url, `/upload?i=${i}`);
        assert.equal(seen.headers['content-length'], String(100_000 + i));
        assert.equal(seen.headers['x-den-preview-token'], undefined, 'the token header is removed from every request');
        assert.equal(seen.headers['x-forwarded-for'], '10.9.9.9, 127.0.0.1');
      }
      const ports = new Set(app.seen.slice(-3).map((x) => x.remotePort));
      assert.equal(ports.size, 1, 'one connection into the sandbox served them all');
    });

    it('hands a connection over between requests when one needs the full proxy', async () => {
      const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
      extra.push(() => one.destroy());
      const viaHeader = await send('/a', { ...privateHost(), 'X-Den-Preview-Token': TOKEN }, { agent: one });
      assert.equal(viaHeader.status, 200);
      const viaQuery = await send(`/b?den_preview_token=${TOKEN}`, privateHost(), { agent: one });
      assert.equal(viaQuery.status, 200);
      assert.match(viaQuery.headers['set-cookie']?.[0] ?? '', /^den_preview_token=/);
      assert.equal(app.seen.at(-1)!.url, '/b');
      const missing = await send('/c', privateHost(), { agent: one });
      assert.equal(missing.status, 401);
      const otherPreview = await send('/d', publicHost(), { agent: one });
      assert.equal(otherPreview.status, 200);
      const api = await send('/v1/health', { host: `localhost:${daemonPort}` }, { agent: one });
      assert.deepEqual(JSON.parse(api.body), { api: true, url: '/v1/health' });
    });

    it('answers pipelined requests in order', async () => {
      const socket = connect(daemonPort, '127.0.0.1');
      await once(socket, 'connect');
      const { host: h } = publicHost();
      socket.write(`GET /p1 HTTP/1.1\r\nHost: ${h}\r\n\r\nGET /p2 HTTP/1.1\r\nHost: ${h}\r\n\r\n`);
      let text = '';
      socket.setEncoding('utf8');
      const bodies = () => [...text.matchAll(/\{"url":"([^"]+)"/g)].map((m) => m[1]);
      await new Promise<void>((resolve) =>
        socket.on('data', (d: string) => {
          text += d;
          if (bodies().length === 2) resolve();
        }),
      );
      socket.destroy();
      assert.deepEqual(bodies(), ['/p1', '/p2']);
    });

    it('closes the connection after a request that asks for it', async () => {
      const socket = connect(daemonPort, '127.0.0.1');
      await once(socket, 'connect');
      socket.write(`GET /last HTTP/1.1\r\nHost: ${publicHost().host}\r\nConnection: close\r\n\r\n`);
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      await once(socket, 'close');
      assert.match(text, /^HTTP\/1\.1 200 [\s\S]*"url":"\/last"/);
    });

    it('leaves reserved preview-like hosts (envd) and malformed heads to the daemon', async () => {
      const reserved = await send('/x', { host: `49983-abcdefghij0123456789.preview.test:${daemonPort}` });
      assert.deepEqual(JSON.parse(reserved.body), { envd: true, url: '/x' });
      const socket = connect(daemonPort, '127.0.0.1');
      await once(socket, 'connect');
      socket.write(`GET / HTTP/1.1\r\nHost: ${publicHost().host}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n`);
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      await once(socket, 'close');
      assert.match(text, /^HTTP\/1\.1 400 /, "Node's parser rejects a request with two lengths");
    });

    it('logged no unexpected failures', () => {
      assert.deepEqual(warnings, []);
    });
  });
}
