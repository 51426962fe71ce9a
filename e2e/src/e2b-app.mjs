// An application written for E2B, unchanged: it knows nothing about den. It finds its API through the e2b SDK's
// own environment variables (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY), exercises the SDK's surface on real
// sandboxes and prints one JSON line of what it saw. e2e/test/e2b-app.test.ts runs it with only those variables
// (plus PATH and HOME) and checks the line.
import { get } from 'node:http';
import { CommandExitError, FilesystemEventType, FileType, Sandbox, SandboxNotFoundError } from 'e2b';

const WAIT_MS = 15_000;
const tag = `app-${process.pid}-${Date.now()}`;
const results = { tag };
const created = [];

/** Polls `check` until it is truthy; throws naming `what` (text, or a function giving it) after WAIT_MS. */
async function until(check, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every page of a Sandbox.list query. */
async function listAll(opts) {
  const pages = Sandbox.list(opts);
  const items = [];
  while (pages.hasNext) items.push(...(await pages.nextItems()));
  return items;
}

/**
 * GET http://<host>/<path> as any HTTP client would. Names under `.localhost` are loopback (RFC 6761; browsers
 * resolve them so), which the system resolver does not know, hence the lookup.
 */
function httpGet(url, headers = {}) {
  const lookup = (hostname, options, callback) => {
    if (!hostname.endsWith('.localhost')) throw new Error(`not a .localhost name: ${hostname}`);
    if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
    else callback(null, '127.0.0.1', 4);
  };
  return new Promise((resolve, reject) => {
    const req = get(url, { headers, lookup, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
  });
}

/** Starts `python3 -m http.server 8000` serving a file, and waits until the server answers inside the sandbox. */
async function serveFile(sbx, text) {
  await sbx.files.write('/home/user/site/hello.txt', text);
  await sbx.commands.run('python3 -m http.server 8000 --directory /home/user/site', { background: true });
  await until(
    async () => (await sbx.commands.run('curl -sf http://127.0.0.1:8000/hello.txt || true')).stdout === text,
    'http.server in the sandbox',
  );
}

async function main() {
  const sbx = await Sandbox.create('base', {
    timeoutMs: 120_000,
    metadata: { app: tag, role: 'main' },
    envs: { GREETING: 'hello from envs' },
  });
  created.push(sbx.sandboxId);
  results.create = {
    idFormat: /^[a-z0-9]+$/.test(sbx.sandboxId),
    greeting: (await sbx.commands.run('echo "$GREETING"')).stdout,
  };

  // commands: streamed output, a failing command
  const out = [];
  const err = [];
  const run = await sbx.commands.run('echo out1; echo err1 >&2; sleep 0.2; echo out2', {
    onStdout: (t) => out.push(t),
    onStderr: (t) => err.push(t),
  });
  let failure;
  try {
    await sbx.commands.run('echo partial; exit 7');
  } catch (e) {
    failure = { isCommandExitError: e instanceof CommandExitError, exitCode: e.exitCode, stdout: e.stdout };
  }
  results.commands = {
    exitCode: run.exitCode,
    stdout: run.stdout,
    stderr: run.stderr,
    streamedStdout: out.join(''),
    streamedStderr: err.join(''),
    failure,
  };

  // background command: list, sendStdin, disconnect, connect, kill
  const echoed = [];
  const handle = await sbx.commands.run('cat', { background: true, stdin: true, onStdout: (t) => echoed.push(t) });
  const listed = (await sbx.commands.list()).find((p) => p.pid === handle.pid);
  await sbx.commands.sendStdin(handle.pid, 'ping\n');
  await until(() => echoed.join('') === 'ping\n', 'echo of stdin');
  await handle.disconnect();
  const reattached = [];
  const attached = await sbx.commands.connect(handle.pid, { onStdout: (t) => reattached.push(t) });
  await sbx.commands.sendStdin(handle.pid, 'pong\n');
  await until(() => reattached.join('').includes('pong\n'), 'output after connect');
  const killed = await sbx.commands.kill(handle.pid);
  const end = await attached.wait().then(
    () => 'exited normally',
    (e) => (e instanceof CommandExitError ? e.error : String(e)),
  );
  results.background = {
    listedArgs: listed?.args,
    echoed: echoed.join(''),
    reattached: reattached.join(''),
    killed,
    end,
    killAgain: await sbx.commands.kill(handle.pid),
  };

  // pty
  let screen = '';
  const decoder = new TextDecoder();
  const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (screen += decoder.decode(d)) });
  await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo pty-$((6*7))\n'));
  await until(() => screen.includes('pty-42'), 'pty output');
  await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 });
  await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('stty size\n'));
  await until(() => screen.includes('30 100'), 'resized terminal');
  results.pty = {
    computed: screen.includes('pty-42'),
    resized: screen.includes('30 100'),
    killed: await sbx.pty.kill(pty.pid),
  };

  // files
  const watched = [];
  await sbx.files.makeDir('/home/user/watched');
  const watcher = await sbx.files.watchDir('/home/user/watched', (e) => watched.push(`${e.type}:${e.name}`));
  const textInfo = await sbx.files.write('/home/user/watched/a.txt', 'text body');
  const bytes = new Uint8Array([0, 1, 2, 200, 255]);
  await sbx.files.write('/home/user/data/b.bin', bytes.buffer);
  await sbx.files.write(
    '/home/user/data/c.txt',
    new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('streamed '));
        controller.enqueue(new TextEncoder().encode('body'));
        controller.close();
      },
    }),
  );
  const many = await sbx.files.write([
    { path: '/home/user/many/1.txt', data: 'one' },
    { path: '/home/user/many/2.txt', data: new TextEncoder().encode('two').buffer },
  ]);
  const streamed = [];
  for await (const part of await sbx.files.read('/home/user/data/c.txt', { format: 'stream' })) {
    streamed.push(...part);
  }
  await until(
    () => watched.includes(`${FilesystemEventType.WRITE}:a.txt`),
    () => `watch events for a.txt, got ${JSON.stringify(watched)}`,
  );
  await watcher.stop();
  const info = await sbx.files.getInfo('/home/user/data/b.bin');
  const madeDir = await sbx.files.makeDir('/home/user/newdir');
  const madeAgain = await sbx.files.makeDir('/home/user/newdir');
  const renamed = await sbx.files.rename('/home/user/data/c.txt', '/home/user/newdir/c.txt');
  await sbx.files.remove('/home/user/many/2.txt');
  results.files = {
    writtenPath: textInfo.path,
    text: await sbx.files.read('/home/user/watched/a.txt'),
    bytes: [...(await sbx.files.read('/home/user/data/b.bin', { format: 'bytes' }))],
    stream: new TextDecoder().decode(new Uint8Array(streamed)),
    multipart: many.map((w) => w.path),
    list: (await sbx.files.list('/home/user/many')).map((e) => e.name),
    exists: await sbx.files.exists('/home/user/data/b.bin'),
    missing: await sbx.files.exists('/home/user/nope'),
    info: { name: info.name, size: info.size, isFile: info.type === FileType.FILE },
    madeDir,
    madeAgain,
    renamed: renamed.path,
    renamedText: await sbx.files.read('/home/user/newdir/c.txt'),
    watched: watched.includes(`${FilesystemEventType.CREATE}:a.txt`),
    watchedNames: [...new Set(watched.map((e) => e.slice(e.indexOf(':') + 1)))],
  };

  // previews: public by default; private with allowPublicTraffic: false, opened with the traffic access token
  await serveFile(sbx, 'public page');
  const publicUrl = `http://${sbx.getHost(8000)}/hello.txt`;
  const publicPage = await until(async () => {
    const r = await httpGet(publicUrl);
    return r.status === 200 ? r : undefined;
  }, 'the public preview');
  const priv = await Sandbox.create('base', {
    timeoutMs: 60_000,
    metadata: { app: tag, role: 'private' },
    network: { allowPublicTraffic: false },
  });
  created.push(priv.sandboxId);
  await serveFile(priv, 'private page');
  const privateUrl = `http://${priv.getHost(8000)}/hello.txt`;
  const withToken = await until(async () => {
    const r = await httpGet(privateUrl, { 'e2b-traffic-access-token': priv.trafficAccessToken });
    return r.status === 200 ? r : undefined;
  }, 'the private preview');
  results.preview = {
    host: sbx.getHost(8000),
    publicStatus: publicPage.status,
    publicBody: publicPage.body,
    hasTrafficToken: typeof priv.trafficAccessToken === 'string' && priv.trafficAccessToken.length > 0,
    privateWithoutToken: (await httpGet(privateUrl)).status,
    privateWrongToken: (await httpGet(privateUrl, { 'e2b-traffic-access-token': 'wrong' })).status,
    privateWithToken: withToken.status,
    privateBody: withToken.body,
    privateInfo: (await priv.getInfo()).network?.allowPublicTraffic,
  };

  // lifecycle: timeout, info, list, metrics, running
  const setAt = Date.now();
  await sbx.setTimeout(180_000);
  const sbxInfo = await sbx.getInfo();
  const third = await Sandbox.create('base', { timeoutMs: 60_000, metadata: { app: tag, role: 'third' } });
  created.push(third.sandboxId);
  const firstPage = Sandbox.list({ query: { metadata: { app: tag } }, limit: 2 });
  const page1 = await firstPage.nextItems();
  const hadNext = firstPage.hasNext;
  const page2 = await firstPage.nextItems();
  const metrics = await sbx.getMetrics();
  results.lifecycle = {
    endAtDriftMs: Math.abs(sbxInfo.endAt.getTime() - (setAt + 180_000)),
    info: { templateId: sbxInfo.templateId, state: sbxInfo.state, metadata: sbxInfo.metadata },
    listed: (await listAll({ query: { metadata: { app: tag } } })).length,
    listedMain: (await listAll({ query: { metadata: { app: tag, role: 'main' } } })).map((s) => s.sandboxId),
    pages: [page1.length, page2.length, hadNext, firstPage.hasNext],
    pagesDistinct: new Set([...page1, ...page2].map((s) => s.sandboxId)).size,
    metrics: { samples: metrics.length, cpuCount: metrics[0]?.cpuCount, memTotal: metrics[0]?.memTotal },
    running: await sbx.isRunning(),
  };

  // pause, then connect resumes with the files kept
  await sbx.files.write('/home/user/kept.txt', 'kept across pause');
  const paused = await sbx.pause();
  const pausedListed = await listAll({ query: { metadata: { app: tag }, state: ['paused'] } });
  const runningListed = await listAll({ query: { metadata: { app: tag }, state: ['running'] } });
  const resumed = await Sandbox.connect(sbx.sandboxId);
  results.pause = {
    paused,
    pausedListed: pausedListed.map((s) => s.sandboxId),
    runningListed: runningListed.length,
    sameId: resumed.sandboxId === sbx.sandboxId,
    stateAfterConnect: (await resumed.getInfo()).state,
    kept: await resumed.files.read('/home/user/kept.txt'),
    runs: (await resumed.commands.run('echo alive')).stdout,
  };

  // kill
  const killedMain = await Sandbox.kill(sbx.sandboxId);
  const gone = await Sandbox.getInfo(sbx.sandboxId).then(
    () => 'still there',
    (e) => (e instanceof SandboxNotFoundError ? 'SandboxNotFoundError' : String(e)),
  );
  results.kill = { killed: killedMain, again: await Sandbox.kill(sbx.sandboxId), gone };
}

try {
  await main();
  results.ok = true;
} catch (e) {
  results.ok = false;
  results.error = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e);
} finally {
  await Promise.all(created.map((id) => Sandbox.kill(id).catch(() => false)));
}
process.stdout.write(`${JSON.stringify(results)}\n`);
