import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DenClient, Sandbox, SandboxNotFoundError } from '@den/sdk';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sandbox timeouts against a real daemon: the onTimeout action runs, and deadlines survive a daemon restart. */
describe('sandbox timeouts', () => {
  let daemon: TestDaemon;
  before(async () => {
    daemon = await startDaemon();
  });
  after(async () => {
    await destroyDaemon(daemon);
    assert.deepEqual(leftovers(daemon.home), []);
  });
  const client = () => new DenClient({ url: daemon.url });
  const gone = async (id: string) => {
    try {
      await client().getSandbox(id);
      return false;
    } catch (err) {
      if (err instanceof SandboxNotFoundError) return true;
      throw err;
    }
  };

  test('a sandbox with a 2 s timeout is deleted', async () => {
    const t0 = Date.now();
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', timeoutMs: 2_000 });
    const info = await sbx.info();
    assert.equal(info.onTimeout, 'delete');
    assert.ok(Math.abs(Date.parse(info.timeoutAt!) - (t0 + 2_000)) < 1_500, info.timeoutAt!);
    assert.equal(await gone(sbx.id), false);
    await waitFor(() => gone(sbx.id), 'the timed-out sandbox to be deleted', 10_000);
    assert.ok(Date.now() - t0 >= 2_000, 'not before its timeout');
  });

  test("onTimeout 'stop' stops the sandbox, 'pause' pauses it; both clear the timeout", async () => {
    const stop = await Sandbox.create({ url: daemon.url, runtime: 'runc', timeoutMs: 2_000, onTimeout: 'stop' });
    const pause = await Sandbox.create({ url: daemon.url, runtime: 'runsc', timeoutMs: 2_000, onTimeout: 'pause' });
    assert.equal((await pause.info()).onTimeout, 'pause');
    for (const [sbx, state] of [
      [stop, 'stopped'],
      [pause, 'paused'],
    ] as const) {
      await waitFor(async () => (await sbx.info()).state === state, `the sandbox to be ${state}`, 15_000);
      const info = await sbx.info();
      assert.equal(info.timeoutAt, null);
      assert.equal(info.desiredState, state);
    }
    assert.equal((await pause.info()).pause?.memory, true, 'runsc pauses with memory');
    // Started again, it has no timeout until one is set.
    await stop.start();
    await sleep(1_500);
    assert.equal((await stop.info()).state, 'running');
    assert.equal((await pause.commands.run('echo back')).stdout, 'back\n', 'a call resumes the paused one');
    await stop.kill();
    await pause.kill();
  });

  test('setTimeout moves the deadline; 0 removes it', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', timeoutMs: 2_000 });
    const none = await sbx.setTimeout(0);
    assert.equal(none.timeoutAt, null);
    await sleep(3_000);
    assert.equal((await sbx.info()).state, 'running', 'no timeout: still running');
    const t0 = Date.now();
    const set = await sbx.setTimeout(1_000);
    assert.ok(Math.abs(Date.parse(set.timeoutAt!) - (t0 + 1_000)) < 1_000, set.timeoutAt!);
    await waitFor(() => gone(sbx.id), 'the sandbox to be deleted at its new timeout', 10_000);
  });

  test('a timeout that passes while the daemon is down runs when it starts again', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', timeoutMs: 3_000 });
    const { timeoutAt } = await sbx.info();
    await daemon.stop();
    await sleep(Math.max(0, Date.parse(timeoutAt!) - Date.now()) + 500);
    daemon = await daemon.restart();
    await waitFor(() => gone(sbx.id), 'the sandbox to be deleted after the restart', 10_000);
  });

  test('bad timeouts are 400s naming the field', async () => {
    const res = await fetch(`${daemon.url}/v1/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ timeoutMs: -1 }),
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { message: string }).message, /timeoutMs/);
    const bad = await fetch(`${daemon.url}/v1/sandboxes/nosuch/timeout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ timeoutMs: 1000 }),
    });
    assert.equal(bad.status, 404);
  });
});
