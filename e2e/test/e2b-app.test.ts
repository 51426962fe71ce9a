import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Sandbox } from 'e2b';
import { type E2BConnection, e2bConnection, e2bEnv, envdAccessTokenOf } from '../src/e2b.js';
import { destroyDaemon, REPO_ROOT, startDaemon, type TestDaemon } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/**
 * den's promise to E2B users: an application written for E2B switches to den by setting two URLs and a den API
 * key, nothing else. `e2e/src/e2b-app.mjs` is such an application (`import { Sandbox } from 'e2b'`, no den code);
 * it is copied into a directory of its own and run as `node app.mjs` with an environment of only PATH, HOME and
 * the three E2B_* variables. It prints one JSON line of what it saw, checked here.
 */
const APP_SOURCE = join(REPO_ROOT, 'e2e/src/e2b-app.mjs');

/** The root of the installed `e2b` package (the directory holding its package.json). */
function e2bPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.resolve('e2b')));
  while (!dir.endsWith('/e2b')) dir = dirname(dir);
  return dir;
}

/**
 * A directory with app.mjs and node_modules/e2b (a link to the installed package), so the app's bare
 * `import 'e2b'` resolves as in any project that ran `npm install e2b`.
 */
async function appDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'den-e2b-app-'));
  await copyFile(APP_SOURCE, join(dir, 'app.mjs'));
  await mkdir(join(dir, 'node_modules'));
  await symlink(e2bPackageRoot(), join(dir, 'node_modules/e2b'), 'dir');
  return dir;
}

function runApp(app: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [app], { env, cwd: dirname(app), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

type AppResults = Record<string, Record<string, unknown> | boolean | string | undefined>;

describe('an unmodified E2B application, configured only by E2B_* environment variables', () => {
  let daemon: TestDaemon;
  let conn: E2BConnection;
  let dir: string;

  before(async () => {
    daemon = await startDaemon();
    conn = await e2bConnection(daemon);
    dir = await appDir();
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    if (daemon) {
      await destroyDaemon(daemon);
      assert.deepEqual(leftovers(daemon.home), []);
    }
  });

  test('app.mjs runs the e2b SDK end to end against den', { timeout: 300_000 }, async () => {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dir, ...e2bEnv(conn) };
    const started = Date.now();
    const { code, stdout, stderr } = await runApp(join(dir, 'app.mjs'), env);
    const lastLine = stdout.trim().split('\n').at(-1) ?? '';
    assert.ok(lastLine.startsWith('{'), `no JSON line from the app (exit ${code}):\n${stdout}\n${stderr}`);
    const r = JSON.parse(lastLine) as AppResults;
    console.log(`app.mjs took ${Date.now() - started} ms`);
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.ok, true);
    assert.equal(code, 0, stderr);

    assert.deepEqual(r.create, { idFormat: true, greeting: 'hello from envs\n' });
    assert.deepEqual(r.commands, {
      exitCode: 0,
      stdout: 'out1\nout2\n',
      stderr: 'err1\n',
      streamedStdout: 'out1\nout2\n',
      streamedStderr: 'err1\n',
      failure: { isCommandExitError: true, exitCode: 7, stdout: 'partial\n' },
    });
    assert.deepEqual(r.background, {
      listedArgs: ['-l', '-c', 'cat'],
      echoed: 'ping\n',
      reattached: 'pong\n',
      killed: true,
      end: 'signal: killed',
      killAgain: false,
    });
    assert.deepEqual(r.pty, { computed: true, resized: true, killed: true });
    assert.deepEqual(r.files, {
      writtenPath: '/home/user/watched/a.txt',
      text: 'text body',
      bytes: [0, 1, 2, 200, 255],
      stream: 'streamed body',
      multipart: ['/home/user/many/1.txt', '/home/user/many/2.txt'],
      list: ['1.txt'],
      exists: true,
      missing: false,
      info: { name: 'b.bin', size: 5, isFile: true },
      madeDir: true,
      madeAgain: false,
      renamed: '/home/user/newdir/c.txt',
      renamedText: 'streamed body',
      watched: true,
      watchedNames: ['a.txt'],
    });

    const port = new URL(daemon.url).port;
    const preview = r.preview as Record<string, unknown>;
    assert.match(String(preview.host), new RegExp(`^8000-[a-z0-9]+\\.localhost:${port}$`));
    assert.deepEqual(
      { ...preview, host: undefined },
      {
        host: undefined,
        publicStatus: 200,
        publicBody: 'public page',
        hasTrafficToken: true,
        privateWithoutToken: 401,
        privateWrongToken: 403,
        privateWithToken: 200,
        privateBody: 'private page',
        privateInfo: false,
      },
    );

    const lifecycle = r.lifecycle as Record<string, unknown> & { endAtDriftMs: number };
    assert.ok(lifecycle.endAtDriftMs < 5_000, `endAt after setTimeout is ${lifecycle.endAtDriftMs} ms off`);
    assert.deepEqual(
      { ...lifecycle, endAtDriftMs: undefined, listedMain: (lifecycle.listedMain as string[]).length },
      {
        endAtDriftMs: undefined,
        info: { templateId: 'base', state: 'running', metadata: { app: r.tag, role: 'main' } },
        listed: 3,
        listedMain: 1,
        pages: [2, 1, true, false],
        pagesDistinct: 3,
        metrics: { samples: 1, cpuCount: 1, memTotal: 1024 * 1024 * 1024 },
        running: true,
      },
    );
    const pause = r.pause as Record<string, unknown>;
    assert.equal((pause.pausedListed as string[]).length, 1);
    assert.deepEqual(
      { ...pause, pausedListed: undefined },
      {
        paused: true,
        pausedListed: undefined,
        runningListed: 2,
        sameId: true,
        stateAfterConnect: 'running',
        kept: 'kept across pause',
        runs: 'alive\n',
      },
    );
    assert.deepEqual(r.kill, { killed: true, again: false, gone: 'SandboxNotFoundError' });

    // The app cleaned up after itself: none of its sandboxes is left.
    const res = await fetch(`${daemon.url}/v1/sandboxes`);
    assert.deepEqual(((await res.json()) as { sandboxes: unknown[] }).sandboxes, []);
  });

  test('secure sandbox: envd refuses a missing or wrong X-Access-Token; the SDK’s own calls work', async () => {
    const sbx = await Sandbox.create('base', { ...conn, timeoutMs: 60_000 });
    try {
      const token = envdAccessTokenOf(sbx);
      assert.ok(token, 'the create answer carries envdAccessToken');
      const envd = (path: string, headers: Record<string, string>, body?: string) =>
        fetch(`${conn.sandboxUrl}${path}`, {
          method: body === undefined ? 'GET' : 'POST',
          headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '49983', ...headers },
          body,
        });
      const rpc = { 'content-type': 'application/json', 'connect-protocol-version': '1' };
      const list = (headers: Record<string, string>) => envd('/process.Process/List', { ...rpc, ...headers }, '{}');
      const read = (headers: Record<string, string>) => envd('/files?path=%2Fetc%2Fhostname', headers);

      const refusedHeaders: Record<string, string>[] = [{}, { 'x-access-token': 'wrong' }];
      for (const headers of refusedHeaders) {
        const refused = await list(headers);
        assert.equal(refused.status, 401, JSON.stringify(headers));
        assert.equal(((await refused.json()) as { code: string }).code, 'unauthenticated');
        assert.equal((await read(headers)).status, 401, `files ${JSON.stringify(headers)}`);
      }
      const allowed = await list({ 'x-access-token': token });
      assert.equal(allowed.status, 200);
      // Connect's JSON leaves out empty lists: a sandbox with no processes answers {}.
      assert.ok(Array.isArray(((await allowed.json()) as { processes?: unknown[] }).processes ?? []));
      assert.equal((await read({ 'x-access-token': token })).status, 200);

      assert.equal((await sbx.commands.run('echo secure')).stdout, 'secure\n');
      await sbx.files.write('/tmp/s.txt', 'ok');
      assert.equal(await sbx.files.read('/tmp/s.txt'), 'ok');
      // A second client that only knows the id gets the token from connect, as E2B clients do.
      const again = await Sandbox.connect(sbx.sandboxId, conn);
      assert.equal(envdAccessTokenOf(again), token);
      assert.equal(await again.files.read('/tmp/s.txt'), 'ok');
    } finally {
      await sbx.kill();
    }
  });
});
