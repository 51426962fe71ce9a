import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DenClient, Sandbox } from '@den/sdk';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { leftovers, networkLeftovers } from '../src/leaks.js';

/** The warm pool: creates with default limits take a booted sandbox; the pool refills; a smaller pool drains. */
describe('warm pool', () => {
  let daemon: TestDaemon;
  const pool = async () => (await new DenClient({ url: daemon.url }).status()).warmPool;

  /** Pooled sandboxes are not in the API's list, so destroyDaemon would not remove them: the pool drains first. */
  async function drain(): Promise<void> {
    daemon = await daemon.restart({ DEN_WARM_POOL: '' });
    await waitFor(async () => Object.keys(await pool()).length === 0, 'the pool to drain', 60_000);
    await waitFor(() => leftovers(daemon.home).length === 0, 'the pooled sandboxes to be gone', 30_000);
  }

  before(async () => {
    daemon = await startDaemon({ env: { DEN_WARM_POOL: 'base/runc=2,base/runsc=1' } });
    await waitFor(
      async () => {
        const p = await pool();
        return p['base/runc'] === 2 && p['base/runsc'] === 1;
      },
      'the pool to fill',
      60_000,
    );
  });
  after(async () => {
    if (!daemon) return;
    await drain().catch((err: unknown) => console.error('warm pool: drain failed', err));
    await destroyDaemon(daemon);
  });

  test('pooled sandboxes are invisible until a create takes one, which then is a normal sandbox', async () => {
    assert.deepEqual(await Sandbox.list({ url: daemon.url }), []);
    const t0 = performance.now();
    const sbx = await Sandbox.create({
      url: daemon.url,
      runtime: 'runc',
      name: 'from-pool',
      env: { GREETING: 'hi' },
      metadata: { team: 'a' },
      network: { policy: 'none' },
    });
    const r = await sbx.commands.run('echo $GREETING; id -un');
    const ms = performance.now() - t0;
    assert.equal(r.stdout, 'hi\nuser\n');
    const info = await sbx.info();
    assert.equal(info.name, 'from-pool');
    assert.deepEqual(info.metadata, { team: 'a' });
    assert.equal(info.network.policy, 'none');
    const out = await sbx.commands.run(['curl', '-s', '-m', '2', 'http://192.0.2.1/']);
    assert.notEqual(out.exitCode, 0, 'the requested policy applies to a pooled sandbox');
    assert.ok(ms < 2_000, `create + first exec from the pool took ${ms} ms`);
    assert.equal((await Sandbox.list({ url: daemon.url })).length, 1);
    await waitFor(async () => (await pool())['base/runc'] === 2, 'the pool to refill', 30_000);
    await sbx.kill();
  });

  test('limits other than the defaults boot a fresh sandbox; names stay unique', async () => {
    const custom = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 300 });
    assert.equal((await custom.info()).memoryMB, 300);
    assert.equal((await custom.commands.run('true')).exitCode, 0);
    const named = await Sandbox.create({ url: daemon.url, runtime: 'runc', name: 'taken' });
    await assert.rejects(Sandbox.create({ url: daemon.url, runtime: 'runc', name: 'taken' }), /already exists/);
    const gvisor = await Sandbox.create({ url: daemon.url, runtime: 'runsc' });
    assert.equal((await gvisor.commands.run('echo ok')).stdout, 'ok\n');
    await Promise.all([custom.kill(), named.kill(), gvisor.kill()]);
  });

  test('a daemon restarted with a smaller pool removes the extra pooled sandboxes', async () => {
    await waitFor(async () => (await pool())['base/runc'] === 2, 'the pool to be full', 60_000);
    daemon = await daemon.restart({ DEN_WARM_POOL: 'base/runc=1' });
    await waitFor(
      async () => {
        const p = await pool();
        return p['base/runc'] === 1 && p['base/runsc'] === undefined;
      },
      'the pool to shrink',
      30_000,
    );
    await drain();
    assert.deepEqual(leftovers(daemon.home), []);
    assert.deepEqual(networkLeftovers(daemon.bridge), []);
  });

  test('a bad pool setting stops the daemon with what to fix', async () => {
    await assert.rejects(startDaemon({ env: { DEN_WARM_POOL: 'base/kvm=1' } }), /IMAGE\/RUNTIME=COUNT/);
  });
});
