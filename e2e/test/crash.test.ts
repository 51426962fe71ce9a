import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Sandbox } from '@den/sdk';
import { api, destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/** The daemon can die at any moment; nothing is lost or leaked, and running sandboxes keep running. */
describe('daemon crash and restart', () => {
  let daemon: TestDaemon;
  after(async () => destroyDaemon(daemon));

  test('running sandboxes and their background processes survive a daemon SIGKILL', async () => {
    daemon = await startDaemon();
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', name: 'keeper' });
    await sbx.files.write('/home/user/state.txt', 'kept');
    const bg = await sbx.commands.run('while true; do date +%s%N >> /tmp/ticks; sleep 0.1; done', { background: true });
    await bg.disconnect();
    await daemon.kill9();
    daemon = await daemon.restart();
    const again = await Sandbox.connect('keeper', { url: daemon.url });
    assert.equal((await again.info()).state, 'running');
    assert.equal(await again.files.read('/home/user/state.txt'), 'kept');
    const procs = await again.commands.list();
    assert.ok(
      procs.some((p) => p.pid === bg.pid),
      'the background process kept running through the restart',
    );
    const n1 = Number((await again.commands.run('wc -l < /tmp/ticks')).stdout);
    await new Promise((r) => setTimeout(r, 400));
    const n2 = Number((await again.commands.run('wc -l < /tmp/ticks')).stdout);
    assert.ok(n2 > n1, 'it is still ticking');
    await again.kill();
  });

  for (const delayMs of [5, 60, 150]) {
    test(`a daemon killed ${delayMs} ms into a create finishes or removes the sandbox after restart`, async () => {
      daemon ??= await startDaemon();
      if (daemon.proc.exitCode !== null || daemon.proc.signalCode !== null) daemon = await daemon.restart();
      const pending = api(daemon, 'POST', '/v1/sandboxes', { runtime: 'runsc', name: `crash-${delayMs}` }).catch(
        () => undefined,
      );
      await new Promise((r) => setTimeout(r, delayMs));
      await daemon.kill9();
      await pending;
      daemon = await daemon.restart();
      const list = await Sandbox.list({ url: daemon.url });
      const found = list.find((s) => s.name === `crash-${delayMs}`);
      if (found) {
        // Reconcile finished the create: the sandbox works.
        assert.equal(found.state, 'running');
        const sbx = await Sandbox.connect(found.id, { url: daemon.url });
        assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
        await sbx.kill();
      }
      await waitFor(async () => leftovers(daemon.home).length === 0, 'no leftovers', 15_000);
    });
  }
});
