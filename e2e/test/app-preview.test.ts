import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AppFailedError, InvalidArgumentError, Sandbox } from '@den/sdk';
import { type FakeInternet, startFakeInternet } from '../src/fake-internet.js';
import { destroyDaemon, startDaemon, type TestDaemon } from '../src/harness.js';
import { httpGet } from '../src/http.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/apps/', import.meta.url));

/** GET through den's preview proxy (host form), with the sandbox's preview token. */
async function viaPreview(daemon: TestDaemon, sbx: Sandbox, port: number, path = '/'): Promise<string> {
  const res = await httpGet(daemon.url, path, { host: sbx.getHost(port), 'x-den-preview-token': sbx.previewToken });
  assert.equal(res.status, 200, res.body.slice(0, 300));
  return res.body;
}

/**
 * Live previews end to end: real fixture projects uploaded into real runsc sandboxes with network policy `none`, so
 * every package comes from den's read-only shared cache (scripts/package-cache.sh), never the internet.
 */
describe('live app previews', () => {
  let daemon: TestDaemon;
  let sbx: Sandbox;
  let world: FakeInternet;
  let repoDir: string;

  before(async () => {
    // A git repository of the flask fixture, served by a server the test owns ("dumb" HTTP protocol).
    repoDir = mkdtempSync(join(tmpdir(), 'den-git-'));
    const work = join(repoDir, 'work');
    cpSync(join(FIXTURES, 'flask'), work, { recursive: true });
    const git = (...args: string[]) => execFileSync('git', args, { cwd: work, stdio: 'pipe' });
    git('init', '-q');
    git('add', '.');
    git('-c', 'user.email=t@den', '-c', 'user.name=t', 'commit', '-qm', 'fixture');
    execFileSync('git', ['clone', '-q', '--bare', work, join(repoDir, 'flask.git')]);
    execFileSync('git', ['update-server-info'], { cwd: join(repoDir, 'flask.git') });
    world = await startFakeInternet({ staticDir: repoDir });
    daemon = await startDaemon({ env: { DEN_DNS_UPSTREAMS: world.dnsUpstream } });
    sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 1024, network: { policy: 'none' } });
  });
  after(async () => {
    if (daemon) await destroyDaemon(daemon);
    await world?.close();
    if (repoDir) rmSync(repoDir, { recursive: true, force: true });
  });

  const fixtures = [
    ['express', 'node', 3000],
    ['fastify', 'node', 3000],
    ['koa', 'node', 3000],
    ['npm-start', 'node', 4000],
    ['vite-react', 'vite', 5173],
    ['fastapi', 'fastapi', 8000],
    ['flask', 'flask', 5000],
    ['python-plain', 'python', 8000],
  ] as const;
  for (const [name, kind, port] of fixtures) {
    test(`${name}: detected as ${kind}, installed offline, served on ${port}`, async () => {
      const app = await sbx.app.deploy(join(FIXTURES, name), { dir: `/home/user/${name}` });
      assert.equal(app.kind, kind);
      assert.equal(app.port, port);
      assert.ok(app.pid);
      assert.match(await viaPreview(daemon, sbx, port), new RegExp(`den-fixture-${name}`));
      assert.match(app.urls.host, new RegExp(`^http://${port}-${sbx.id}\\.localhost:\\d+/$`));
    });
  }

  test('restart starts the last app again; logs show install and server output', async () => {
    const before = await sbx.app.info();
    const again = await sbx.app.restart();
    assert.notEqual(again.pid, before.pid);
    assert.match(await viaPreview(daemon, sbx, again.port), /den-fixture-python-plain/);
    const lines: string[] = [];
    for await (const line of sbx.app.logs()) lines.push(line);
    assert.ok(
      lines.some((l) => l.startsWith('[den] $ python3')),
      lines.join('\n'),
    );
    assert.ok(lines.some((l) => /listening on 8000/.test(l)));
  });

  test('logs -f streams new lines as they come', async () => {
    const stop = new AbortController();
    const seen: string[] = [];
    const follow = (async () => {
      try {
        for await (const line of sbx.app.logs({ follow: true, lines: 1 }, { signal: stop.signal })) {
          seen.push(line);
          if (line.includes('GET /marker')) stop.abort();
        }
      } catch {
        // aborted
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    await httpGet(daemon.url, '/marker', { host: sbx.getHost(8000), 'x-den-preview-token': sbx.previewToken });
    await Promise.race([follow, new Promise((r) => setTimeout(r, 10_000))]);
    stop.abort();
    assert.ok(
      seen.some((l) => l.includes('GET /marker')),
      seen.join('\n'),
    );
  });

  test('a git URL is cloned, then detected and started', async () => {
    const gitSbx = await Sandbox.create({
      url: daemon.url,
      runtime: 'runsc',
      network: { policy: 'allowlist', allow: [`${world.web}/32`] },
    });
    try {
      const app = await gitSbx.app.start({ git: `http://${world.web}/static/flask.git`, dir: '/home/user/site' });
      assert.equal(app.kind, 'flask');
      assert.match(await viaPreview(daemon, gitSbx, 5000), /den-fixture-flask/);
    } finally {
      await gitSbx.kill();
    }
  });

  test('a project den does not recognise, and a failing install, give clear errors', async () => {
    await sbx.files.write('/home/user/empty/notes.txt', 'nothing to run');
    await assert.rejects(sbx.app.start({ dir: '/home/user/empty' }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, /package\.json|main\.py|app\.py/);
      return true;
    });
    await sbx.files.write(
      '/home/user/broken/package.json',
      JSON.stringify({ name: 'b', dependencies: { 'no-such-pkg-den': '1.0.0' }, scripts: { start: 'node x.js' } }),
    );
    await assert.rejects(sbx.app.start({ dir: '/home/user/broken' }), (err: unknown) => {
      assert.ok(err instanceof AppFailedError, String(err));
      assert.match(err.message, /npm/);
      return true;
    });
    await assert.rejects(sbx.app.start({ dir: 'relative/path' }), InvalidArgumentError);
  });
});
