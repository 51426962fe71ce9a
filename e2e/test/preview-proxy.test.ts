import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type CommandHandle, PortWaitTimeoutError, Sandbox } from '@den/sdk';
import WebSocket from 'ws';
import { DEN_BIN, destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { PREVIEW_APP, startPreviewApp } from '../src/preview-app.js';
import { errorCode, type PreviewResponse, previewRequest, sha256 } from '../src/preview-client.js';

const APP_PORT = 8000;
/** a server bound to 127.0.0.1 inside the sandbox: listed by the agent, unreachable for previews */
const LOOPBACK_PORT = 9001;
/** nothing listens here */
const CLOSED_PORT = 9999;
const HTML = 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8';

/** What the test app says about the request it received. */
interface Described {
  path: string;
  headers: Record<string, string>;
  peerPort: number;
}
const described = (res: PreviewResponse): Described => {
  assert.equal(res.status, 200, res.body.toString('utf8').slice(0, 300));
  return JSON.parse(res.body.toString('utf8')) as Described;
};

/** A WebSocket that is open, or the HTTP status den answered the upgrade with. */
function openWebSocket(url: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`upgrade answered ${res.statusCode}`), { status: res.statusCode }));
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data, binary) => resolve({ data: data as Buffer, binary }));
    ws.once('close', (code) => reject(new Error(`closed with ${code} before a message came`)));
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

/**
 * den's preview proxy end to end: real daemon, a real sandbox per runtime with a Python HTTP/WebSocket server inside
 * (network policy `none`: previews come in over the bridge, nothing goes out), requests from this process through
 * both URL forms.
 */
for (const runtime of ['runsc', 'runc'] as const) {
  describe(`preview proxy on ${runtime}`, () => {
    let daemon: TestDaemon;
    let sbx: Sandbox;
    let server: CommandHandle;
    let loopbackServer: CommandHandle;
    let bigSha256: string;
    const hostForm = () => ({ host: sbx.getHost(APP_PORT) });
    const withToken = () => ({ ...hostForm(), 'x-den-preview-token': sbx.previewToken });
    const pathForm = (port = APP_PORT, ref = sbx.id) => `/proxy/${ref}/${port}`;

    before(async () => {
      daemon = await startDaemon();
      sbx = await Sandbox.create({
        url: daemon.url,
        runtime,
        name: 'web',
        memoryMB: 512,
        network: { policy: 'none' },
      });
      ({ server, bigSha256 } = await startPreviewApp(sbx, APP_PORT));
      loopbackServer = await sbx.commands.run(
        ['python3', '-m', 'http.server', String(LOOPBACK_PORT), '--bind', '127.0.0.1'],
        { background: true },
      );
    });
    after(async () => {
      server?.disconnect();
      loopbackServer?.disconnect();
      if (daemon) await destroyDaemon(daemon);
    });

    test('host form and path form reach the app; the token never does', async () => {
      const viaHost = described(await previewRequest(daemon.url, '/hello?x=1', { headers: withToken() }));
      assert.equal(viaHost.path, '/hello?x=1');
      assert.equal(viaHost.headers.host, sbx.getHost(APP_PORT), 'Host reaches the app as the browser sent it');
      assert.equal(viaHost.headers['x-den-preview-token'], undefined);
      assert.equal(viaHost.headers['x-forwarded-host'], sbx.getHost(APP_PORT));

      const headers = { 'x-den-preview-token': sbx.previewToken };
      const viaPath = described(await previewRequest(daemon.url, `${pathForm()}/hello?x=1`, { headers }));
      assert.equal(viaPath.path, '/hello?x=1');
      const byName = described(await previewRequest(daemon.url, `${pathForm(APP_PORT, 'web')}/`, { headers }));
      assert.equal(byName.path, '/', 'the sandbox name works as a reference too');
      const e2bHeader = { 'e2b-traffic-access-token': sbx.previewToken, ...hostForm() };
      assert.equal(described(await previewRequest(daemon.url, '/', { headers: e2bHeader })).path, '/');
    });

    test('the path form without a slash after the port answers 308 to the slash form', async () => {
      const res = await previewRequest(daemon.url, `${pathForm()}?x=1`);
      assert.equal(res.status, 308);
      assert.equal(res.headers.location, `${pathForm()}/?x=1`);
      const bare = await previewRequest(daemon.url, pathForm());
      assert.equal(bare.status, 308);
      assert.equal(bare.headers.location, `${pathForm()}/`);
    });

    test('keep-alive: the client connection and the pooled connection into the sandbox are reused', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const responses: PreviewResponse[] = [];
        for (let i = 0; i < 5; i++) {
          responses.push(await previewRequest(daemon.url, `/n${i}`, { headers: withToken(), agent }));
        }
        assert.deepEqual(
          responses.map((r) => r.reusedSocket),
          [false, true, true, true, true],
        );
        const peers = new Set(responses.map((r) => described(r).peerPort));
        assert.equal(peers.size, 1, `the app saw connections from ports ${[...peers].join(', ')}`);
      } finally {
        agent.destroy();
      }
    });

    test('a streamed response (SSE, chunked) arrives while the app is still writing', async () => {
      const res = await previewRequest(daemon.url, '/events', { headers: withToken() });
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      assert.equal(res.body.toString('utf8'), 'data: event 0\n\ndata: event 1\n\ndata: event 2\n\n');
      // The app sleeps 400 ms after each event: the first must arrive ~1.2 s before the end, not with it.
      const firstToEnd = res.endTime - res.chunkTimes[0]!;
      assert.ok(firstToEnd > 700, `the first event came only ${firstToEnd.toFixed(0)} ms before the end`);
      assert.ok(res.chunkTimes.length >= 3, `${res.chunkTimes.length} chunk(s): events were buffered together`);
    });

    test('a 20 MiB download arrives intact (sha256 as computed in the sandbox)', async () => {
      const started = performance.now();
      const res = await previewRequest(daemon.url, '/big', { headers: withToken() });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(PREVIEW_APP.bigBytes));
      assert.equal(res.body.length, PREVIEW_APP.bigBytes);
      assert.equal(sha256(res.body), bigSha256);
      const ms = performance.now() - started;
      console.log(`${runtime}: 20 MiB download through the proxy in ${ms.toFixed(0)} ms`);
    });

    test('a 20 MiB POST body is echoed back intact, streamed both ways', async () => {
      const body = randomBytes(20 * 1024 * 1024);
      const started = performance.now();
      const res = await previewRequest(daemon.url, `${pathForm()}/echo`, {
        method: 'POST',
        headers: { 'x-den-preview-token': sbx.previewToken, 'content-type': 'application/octet-stream' },
        body,
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.length, body.length);
      assert.equal(sha256(res.body), sha256(body));
      const ms = performance.now() - started;
      console.log(`${runtime}: 20 MiB echoed through the proxy in ${ms.toFixed(0)} ms`);
    });

    test('WebSocket: text and binary echo through the proxy, both URL forms', async () => {
      const port = new URL(daemon.url).port;
      const ws = await openWebSocket(`ws://127.0.0.1:${port}/ws`, withToken());
      try {
        ws.send('hello through den');
        const text = await nextMessage(ws);
        assert.equal(text.binary, false);
        assert.equal(text.data.toString('utf8'), 'hello through den');
        const blob = randomBytes(300 * 1024);
        ws.send(blob);
        const echoed = await nextMessage(ws);
        assert.equal(echoed.binary, true);
        assert.equal(sha256(echoed.data), sha256(blob));
      } finally {
        ws.terminate();
      }
      const viaPath = await openWebSocket(`ws://127.0.0.1:${port}${pathForm()}/ws`, {
        'x-den-preview-token': sbx.previewToken,
      });
      viaPath.send('path form');
      assert.equal((await nextMessage(viaPath)).data.toString('utf8'), 'path form');
      viaPath.terminate();
    });

    test('WebSocket: a close from either side reaches the other with its code', async () => {
      const port = new URL(daemon.url).port;
      await sbx.files.write(PREVIEW_APP.wsEvents, '');
      const byClient = await openWebSocket(`ws://127.0.0.1:${port}/ws`, withToken());
      const clientSide = closed(byClient);
      byClient.close(4001, 'client says bye');
      assert.equal((await clientSide).code, 4001, 'the app answered the close frame with the same code');
      await waitFor(
        async () => (await sbx.files.read(PREVIEW_APP.wsEvents)).includes('client-close 4001'),
        'the app to see the client close',
      );

      const byServer = await openWebSocket(`ws://127.0.0.1:${port}/ws`, withToken());
      const serverSide = closed(byServer);
      byServer.send('close-please');
      assert.deepEqual(await serverSide, { code: 4002, reason: 'server says bye' });
      await waitFor(
        async () => (await sbx.files.read(PREVIEW_APP.wsEvents)).includes('server-close'),
        'the app to log its close',
      );
    });

    test('WebSocket: an upgrade without the token is refused (401), with a wrong one 403', async () => {
      const url = `ws://127.0.0.1:${new URL(daemon.url).port}/ws`;
      await assert.rejects(openWebSocket(url, hostForm()), { status: 401 });
      await assert.rejects(openWebSocket(url, { ...hostForm(), 'x-den-preview-token': 'wrong' }), { status: 403 });
    });

    test('token: missing 401, wrong 403, header works', async () => {
      const missing = await previewRequest(daemon.url, '/', { headers: hostForm() });
      assert.equal(missing.status, 401);
      assert.equal(errorCode(missing), 'UNAUTHORIZED');
      const wrong = await previewRequest(daemon.url, '/', { headers: { ...hostForm(), 'x-den-preview-token': 'x' } });
      assert.equal(wrong.status, 403);
      assert.equal(errorCode(wrong), 'PERMISSION_DENIED');
      const stale = await previewRequest(daemon.url, '/', {
        headers: { ...hostForm(), cookie: 'den_preview_token=stale' },
      });
      assert.equal(stale.status, 403, 'a wrong cookie alone is refused');
    });

    test('token in the query: stripped before the app, sets a cookie; then the cookie alone works', async () => {
      const token = encodeURIComponent(sbx.previewToken);
      const first = await previewRequest(daemon.url, `/page?den_preview_token=${token}&keep=1`, {
        headers: hostForm(),
      });
      assert.equal(described(first).path, '/page?keep=1', 'the token is not passed on to the app');
      const setCookie = first.headers['set-cookie'];
      assert.ok(setCookie?.length === 1, `one Set-Cookie, got ${JSON.stringify(setCookie)}`);
      const cookie = setCookie[0]!;
      assert.match(cookie, /^den_preview_token=[^;]+; Path=\/; HttpOnly; SameSite=Lax$/);

      const jar = `theme=dark; ${cookie.split(';')[0]}`;
      const again = described(await previewRequest(daemon.url, '/next', { headers: { ...hostForm(), cookie: jar } }));
      assert.equal(again.path, '/next');
      assert.equal(again.headers.cookie, 'theme=dark', "the app gets its own cookies, never den's");

      // The path form scopes its cookie to the one preview.
      const viaPath = await previewRequest(daemon.url, `${pathForm()}/?den_preview_token=${token}`);
      assert.equal(viaPath.status, 200);
      assert.match(String(viaPath.headers['set-cookie']), new RegExp(`Path=${pathForm()}/;`));
    });

    test('public previews need no token; private again, they do', async () => {
      const publicInfo = await sbx.client.updatePreview(sbx.id, { public: true });
      assert.equal(publicInfo.preview.public, true);
      try {
        assert.equal(described(await previewRequest(daemon.url, '/open', { headers: hostForm() })).path, '/open');
        assert.equal(described(await previewRequest(daemon.url, `${pathForm()}/open`)).path, '/open');
        const port = new URL(daemon.url).port;
        const ws = await openWebSocket(`ws://127.0.0.1:${port}/ws`, hostForm());
        ws.send('public');
        assert.equal((await nextMessage(ws)).data.toString('utf8'), 'public');
        ws.terminate();
      } finally {
        const privateInfo = await sbx.client.updatePreview(sbx.id, { public: false });
        assert.equal(privateInfo.preview.public, false);
      }
      const closedAgain = await previewRequest(daemon.url, '/open', { headers: hostForm() });
      assert.equal(closedAgain.status, 401);
      assert.equal(described(await previewRequest(daemon.url, '/open', { headers: withToken() })).path, '/open');
    });

    test('unknown sandbox: 404, as HTML for browsers and JSON otherwise', async () => {
      const host = sbx.getHost(APP_PORT).replace(sbx.id, 'nosuchsandbox');
      const json = await previewRequest(daemon.url, '/', { headers: { host } });
      assert.equal(json.status, 404);
      assert.match(String(json.headers['content-type']), /^application\/json/);
      assert.equal(errorCode(json), 'SANDBOX_NOT_FOUND');
      const html = await previewRequest(daemon.url, `/proxy/nosuchsandbox/${APP_PORT}/`, { headers: { accept: HTML } });
      assert.equal(html.status, 404);
      assert.match(String(html.headers['content-type']), /^text\/html/);
      assert.match(html.body.toString('utf8'), /^<!doctype html>[\s\S]*nosuchsandbox/i);
    });

    test('stopped sandbox: 409 naming `den start`', async () => {
      const stopped = await Sandbox.create({ url: daemon.url, runtime, name: 'sleeper', network: { policy: 'none' } });
      await stopped.stop();
      const json = await previewRequest(daemon.url, '/', {
        headers: { host: stopped.getHost(APP_PORT), 'x-den-preview-token': stopped.previewToken },
      });
      assert.equal(json.status, 409);
      assert.equal(errorCode(json), 'SANDBOX_NOT_RUNNING');
      assert.match(json.body.toString('utf8'), /den start sleeper/);
      const html = await previewRequest(daemon.url, `${pathForm(APP_PORT, 'sleeper')}/`, { headers: { accept: HTML } });
      assert.equal(html.status, 409);
      assert.match(String(html.headers['content-type']), /^text\/html/);
      await stopped.kill();
    });

    test('nothing listening (or loopback only): 502, as HTML for browsers and JSON otherwise', async () => {
      for (const port of [CLOSED_PORT, LOOPBACK_PORT]) {
        const host = sbx.getHost(port);
        const json = await previewRequest(daemon.url, '/', {
          headers: { host, 'x-den-preview-token': sbx.previewToken },
        });
        assert.equal(json.status, 502);
        assert.equal(errorCode(json), 'PORT_NOT_LISTENING');
        assert.match(json.body.toString('utf8'), new RegExp(`port ${port}.*0\\.0\\.0\\.0`));
        const html = await previewRequest(daemon.url, '/', {
          headers: { host, 'x-den-preview-token': sbx.previewToken, accept: HTML },
        });
        assert.equal(html.status, 502);
        assert.match(String(html.headers['content-type']), /^text\/html/);
        assert.match(html.body.toString('utf8'), /^<!doctype html>/i);
      }
    });

    test('ports.list / ports.waitFor show the app with its URLs; a loopback-only server is not reachable', async () => {
      const ports = await sbx.ports.list();
      const app = ports.find((p) => p.port === APP_PORT);
      assert.ok(app, JSON.stringify(ports));
      assert.equal(app.reachable, true);
      assert.equal(app.urls.host, `http://${sbx.getHost(APP_PORT)}/`);
      assert.equal(app.urls.path, `${daemon.url}${pathForm()}/`);
      await waitFor(
        async () => (await sbx.ports.list()).some((p) => p.port === LOOPBACK_PORT),
        'the loopback-only server to listen',
      );
      const loopback = (await sbx.ports.list()).find((p) => p.port === LOOPBACK_PORT)!;
      assert.equal(loopback.address, '127.0.0.1');
      assert.equal(loopback.reachable, false);

      assert.deepEqual(await sbx.ports.waitFor(APP_PORT, { timeoutMs: 5000 }), app);
      await assert.rejects(sbx.ports.waitFor(LOOPBACK_PORT, { timeoutMs: 600 }), (err: unknown) => {
        assert.ok(err instanceof PortWaitTimeoutError);
        assert.match(err.message, /loopback only: bind the server to 0\.0\.0\.0/);
        return true;
      });
      // The URL the SDK reports is the one that works.
      const viaListed = await previewRequest(daemon.url, new URL(app.urls.path).pathname, {
        headers: { 'x-den-preview-token': sbx.previewToken },
      });
      assert.equal(described(viaListed).path, '/');
    });

    test('`den ports REF` prints the port with its preview URL and flags loopback-only servers', () => {
      const den = (args: string[]) =>
        spawnSync(DEN_BIN, args, { encoding: 'utf8', env: { ...process.env, DEN_URL: daemon.url }, timeout: 60_000 });
      const table = den(['ports', 'web']);
      assert.equal(table.status, 0, table.stderr);
      const lines = table.stdout.split('\n');
      assert.match(lines[0]!, /PORT\s+ADDRESS\s+PREVIEW URL/);
      const appLine = lines.find((l) => l.startsWith(String(APP_PORT)));
      assert.ok(appLine?.includes(`http://${sbx.getHost(APP_PORT)}/`), table.stdout);
      const loopLine = lines.find((l) => l.startsWith(String(LOOPBACK_PORT)));
      assert.match(loopLine ?? '', /127\.0\.0\.1\s+\(loopback only: bind to 0\.0\.0\.0\)/);

      const json = den(['ports', sbx.id, '--json']);
      assert.equal(json.status, 0, json.stderr);
      const listed = JSON.parse(json.stdout) as { port: number; reachable: boolean; urls: { host: string } }[];
      assert.equal(listed.find((p) => p.port === APP_PORT)?.urls.host, `http://${sbx.getHost(APP_PORT)}/`);
      assert.equal(listed.find((p) => p.port === LOOPBACK_PORT)?.reachable, false);
    });
  });
}
