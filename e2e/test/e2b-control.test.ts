import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox as DenSandbox } from '@den/sdk';
import { AuthenticationError, Sandbox, SandboxError, type SandboxInfo, SandboxNotFoundError } from 'e2b';
import { destroyDaemon, startDaemon, type TestDaemon } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/**
 * The unmodified `e2b` SDK (2.51) against a real den daemon and real sandboxes: E2B's control API (create, info,
 * timeout, list with filters and pages, pause and resume, metrics, kill, errors). Commands and files go through
 * envd and are tested with it.
 */
describe('E2B control API with the e2b SDK', () => {
  let daemon: TestDaemon;
  let apiKey: string;
  /** unique per run, so filters see only this test's sandboxes; '&', '=' and ' ' test the metadata encoding */
  const suite = `e2b ctl&run=${process.pid}-${Date.now()}`;
  /** the sandboxes created by `create`: first by the first test, second by the list test */
  const ids = { first: '', second: '' };
  const savedEnv = { ...process.env };

  before(async () => {
    daemon = await startDaemon({
      env: { DEN_E2B_TEMPLATE_ALIASES: JSON.stringify({ 'code-interpreter-v1': 'base' }) },
    });
    const res = await fetch(`${daemon.url}/v1/keys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'e2e' }),
    });
    assert.equal(res.status, 201);
    apiKey = ((await res.json()) as { key: string }).key;
    process.env.E2B_API_URL = `${daemon.url}/e2b`;
    process.env.E2B_SANDBOX_URL = `${daemon.url}/e2b`;
    process.env.E2B_API_KEY = apiKey;
  });
  after(async () => {
    process.env = savedEnv;
    if (daemon) {
      await destroyDaemon(daemon);
      assert.deepEqual(leftovers(daemon.home), []);
    }
  });

  const create = async (n: string, opts: Parameters<typeof Sandbox.create>[1] = {}) => {
    return Sandbox.create('base', { timeoutMs: 60_000, metadata: { suite, n }, ...opts });
  };
  const denView = async (id: string) =>
    (await (await fetch(`${daemon.url}/v1/sandboxes/${id}`)).json()) as {
      env: Record<string, string>;
      timeoutAt: string | null;
      onTimeout: string;
      state: string;
      network: { policy: string; allow: string[] };
    };
  const near = (actual: Date, expectedMs: number, what: string) =>
    assert.ok(Math.abs(actual.getTime() - expectedMs) < 5_000, `${what}: ${actual.toISOString()} vs ${expectedMs}`);
  const all = async (opts: Parameters<typeof Sandbox.list>[0]): Promise<SandboxInfo[]> => {
    const pages = Sandbox.list(opts);
    const items: SandboxInfo[] = [];
    while (pages.hasNext) items.push(...(await pages.nextItems()));
    return items;
  };

  test('create, getInfo, getHost, setTimeout', async () => {
    const t0 = Date.now();
    const sbx = await create('1', { envs: { FOO: 'bar' } });
    ids.first = sbx.sandboxId;
    assert.match(sbx.sandboxId, /^[a-z0-9]+$/);
    const info = await sbx.getInfo();
    assert.equal(info.sandboxId, sbx.sandboxId);
    assert.equal(info.templateId, 'base');
    assert.equal(info.state, 'running');
    assert.deepEqual(info.metadata, { suite, n: '1' });
    assert.equal(info.envdVersion, '0.6.13');
    assert.ok(info.cpuCount >= 1 && info.memoryMB >= 64, JSON.stringify(info));
    near(info.endAt, t0 + 60_000, 'endAt');
    assert.equal(info.lifecycle?.onTimeout, 'kill');
    const den = await denView(sbx.sandboxId);
    assert.equal(den.env.FOO, 'bar', 'envs reach the sandbox env');
    assert.equal(den.onTimeout, 'delete');
    assert.equal(den.state, 'running');
    assert.equal(sbx.getHost(8000), `8000-${sbx.sandboxId}.localhost:${new URL(daemon.url).port}`);

    await sbx.setTimeout(120_000);
    near((await sbx.getInfo()).endAt, Date.now() + 120_000, 'endAt after setTimeout');
    near(new Date((await denView(sbx.sandboxId)).timeoutAt!), Date.now() + 120_000, "den's timeoutAt");
  });

  test('template aliases, network options and autoPause map onto den', async () => {
    const sbx = await Sandbox.create('code-interpreter-v1', {
      timeoutMs: 30_000,
      metadata: { suite, n: 'alias' },
      allowInternetAccess: false,
      lifecycle: { onTimeout: 'pause' },
    });
    const info = await sbx.getInfo();
    assert.equal(info.templateId, 'base');
    assert.equal(info.allowInternetAccess, false);
    assert.equal(info.lifecycle?.onTimeout, 'pause');
    const den = await denView(sbx.sandboxId);
    assert.equal(den.network.policy, 'none');
    assert.equal(den.onTimeout, 'pause');
    assert.equal(await sbx.kill(), true);
  });

  test('list filters by metadata and state, and pages with limit + nextToken', async () => {
    const second = await create('2');
    ids.second = second.sandboxId;
    const mine = await all({ query: { metadata: { suite } } });
    assert.deepEqual(
      mine.map((s) => s.sandboxId).sort(),
      [ids.first, ids.second].sort(),
      'the killed alias sandbox is gone',
    );
    const two = await all({ query: { metadata: { suite, n: '2' } } });
    assert.deepEqual(
      two.map((s) => s.sandboxId),
      [second.sandboxId],
    );
    assert.equal((await all({ query: { metadata: { suite }, state: ['paused'] } })).length, 0);
    assert.equal((await all({ query: { metadata: { suite }, state: ['running'] } })).length, 2);

    const pages = Sandbox.list({ query: { metadata: { suite } }, limit: 1 });
    const first = await pages.nextItems();
    assert.equal(first.length, 1);
    assert.ok(pages.hasNext && pages.nextToken, 'a second page is announced');
    const rest = await pages.nextItems();
    assert.equal(rest.length, 1);
    assert.equal(pages.hasNext, false);
    assert.notEqual(first[0]!.sandboxId, rest[0]!.sandboxId);
    // Newest first, as E2B orders by default.
    assert.equal(first[0]!.sandboxId, second.sandboxId);
  });

  test('pause keeps the filesystem; connect resumes (201) and sets the timeout', async () => {
    const id = ids.second;
    const den = await DenSandbox.connect(id, { url: daemon.url });
    await den.files.write('/home/user/kept.txt', 'still here');
    const sbx = await Sandbox.connect(id);
    assert.equal(await sbx.pause(), true);
    assert.equal((await Sandbox.getInfo(id)).state, 'paused');
    assert.equal((await denView(id)).state, 'paused');
    assert.equal(await sbx.pause(), false, 'pausing a paused sandbox answers 409');
    assert.deepEqual(
      (await all({ query: { metadata: { suite }, state: ['paused'] } })).map((s) => s.sandboxId),
      [id],
    );

    const resumed = await Sandbox.connect(id, { timeoutMs: 90_000 });
    assert.equal(resumed.sandboxId, id);
    const info = await resumed.getInfo();
    assert.equal(info.state, 'running');
    near(info.endAt, Date.now() + 90_000, 'endAt after resume');
    assert.equal(await den.files.read('/home/user/kept.txt'), 'still here');
    // Connecting to a running sandbox only extends its timeout.
    await Sandbox.connect(id, { timeoutMs: 1_000 });
    near((await resumed.getInfo()).endAt, Date.now() + 90_000, 'endAt is not shortened by connect');
  });

  test('isRunning goes through envd', async (t) => {
    const health = await fetch(`${daemon.url}/e2b/health`, {
      headers: { 'E2b-Sandbox-Id': ids.first, 'E2b-Sandbox-Port': '49983' },
    });
    if (health.status === 404 && ((await health.json()) as { code?: string }).code === 'ROUTE_NOT_FOUND') {
      t.skip("den's envd endpoint is not registered in this build");
      return;
    }
    const sbx = await Sandbox.connect(ids.first);
    assert.equal(await sbx.isRunning(), true);
  });

  test('getMetrics: CPU and memory from the cgroup, disk from the sandbox disk', async () => {
    const sbx = await Sandbox.connect(ids.first);
    const metrics = await sbx.getMetrics();
    assert.equal(metrics.length, 1);
    const m = metrics[0]!;
    assert.ok(Math.abs(m.timestamp.getTime() - Date.now()) < 5_000);
    assert.equal(m.cpuCount, 1);
    assert.ok(m.cpuUsedPct >= 0 && m.cpuUsedPct <= 100, `cpu ${m.cpuUsedPct}`);
    assert.equal(m.memTotal, 1024 * 1024 * 1024, 'the default 1024 MiB limit');
    assert.ok(m.memUsed > 1024 * 1024 && m.memUsed < m.memTotal * 2, `memUsed ${m.memUsed}`);
    assert.ok(m.diskTotal > 3 * 1024 ** 3 && m.diskTotal <= 4096 * 1024 ** 2, `diskTotal ${m.diskTotal}`);
    assert.ok(m.diskUsed > 0 && m.diskUsed < m.diskTotal, `diskUsed ${m.diskUsed}`);
    const past = await sbx.getMetrics({
      start: new Date(Date.now() - 3_600_000),
      end: new Date(Date.now() - 1_800_000),
    });
    assert.deepEqual(past, [], 'den keeps no history: an interval in the past has no samples');
  });

  test('kill, Sandbox.kill of a gone sandbox, getInfo of it', async () => {
    const sbx = await Sandbox.connect(ids.first);
    assert.equal(await sbx.kill(), true);
    assert.equal(await Sandbox.kill(ids.first), false);
    await assert.rejects(Sandbox.getInfo(ids.first), SandboxNotFoundError);
    assert.equal(await Sandbox.kill(ids.second), true);
  });

  test('an unknown key is AuthenticationError; an unknown template is a 404', async () => {
    await assert.rejects(Sandbox.create('base', { apiKey: 'den_not_a_key' }), AuthenticationError);
    await assert.rejects(Sandbox.list({ apiKey: 'e2b_1234' }).nextItems(), AuthenticationError);
    await assert.rejects(Sandbox.create('no-such-template'), (err: unknown) => {
      assert.ok(err instanceof SandboxError, String(err));
      assert.equal(err.statusCode, 404);
      assert.match(err.message, /template 'no-such-template' not found/);
      return true;
    });
    const res = await fetch(`${daemon.url}/e2b/v2/sandboxes`, { headers: { authorization: `Bearer ${apiKey}` } });
    assert.equal(res.status, 200, 'Authorization: Bearer works too');
    const bad = await fetch(`${daemon.url}/e2b/v2/sandboxes`, {
      method: 'POST',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ timeout: 'soon' }),
    });
    assert.equal(bad.status, 400);
    const body = (await bad.json()) as { code: number; message: string };
    assert.equal(body.code, 400);
    assert.match(body.message, /templateID/);
  });
});
