import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from '@den/sdk';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/**
 * A sandbox that exhausts its memory, disk or process limit hurts only itself: the host, the daemon and a
 * neighbour sandbox keep working.
 */
for (const runtime of ['runsc', 'runc'] as const) {
  describe(`limits on ${runtime}`, () => {
    let daemon: TestDaemon;
    let victim: Sandbox;
    let neighbour: Sandbox;
    before(async () => {
      daemon = await startDaemon();
      [victim, neighbour] = await Promise.all([
        Sandbox.create({ url: daemon.url, runtime, memoryMB: 256, diskMB: 256, pids: 200 }),
        Sandbox.create({ url: daemon.url, runtime, memoryMB: 256 }),
      ]);
    });
    after(async () => destroyDaemon(daemon));

    const neighbourIsFine = async () => {
      const r = await neighbour.commands.run('echo alive');
      assert.equal(r.stdout, 'alive\n');
    };

    test('a memory hog is killed and the sandbox survives', async () => {
      const hog = await victim.commands.run("python3 -c 'x=[]\nwhile True: x.append(bytearray(16*1024*1024))'", {
        timeoutMs: 60_000,
      });
      assert.notEqual(hog.exitCode, 0, 'the hog does not finish normally');
      assert.equal(hog.timedOut, false, 'the hog is stopped by the memory limit, not the timeout');
      const after = await victim.commands.run('echo still-here');
      assert.equal(after.stdout, 'still-here\n');
      await neighbourIsFine();
    });

    test('filling the disk fails with ENOSPC inside and nothing else breaks', async () => {
      const fill = await victim.commands.run('dd if=/dev/zero of=/home/user/fill bs=1M count=1024 2>&1; echo rc=$?');
      assert.match(fill.stdout, /No space left on device/);
      const df = await victim.commands.run("df -m / | tail -1 | awk '{print $2}'");
      assert.ok(Number(df.stdout) <= 300, `the root reports the disk limit, got ${df.stdout}`);
      await victim.commands.run('rm -f /home/user/fill');
      const write = await victim.commands.run('echo ok > /home/user/after && cat /home/user/after');
      assert.equal(write.stdout, 'ok\n');
      await neighbourIsFine();
    });

    test('a fork bomb is contained by the process limit and the sandbox recovers', async () => {
      // The bomb either ends at its timeout (den kills its process group) or takes the sandbox down, in which case
      // den's reconcile loop starts it again. Either way the neighbour never notices and the victim answers again.
      const bomb = await victim.commands
        .run('bomb() { bomb | bomb & }; bomb; sleep 2', { timeoutMs: 5_000 })
        .catch((err: unknown) => err);
      assert.ok(bomb !== undefined);
      await neighbourIsFine();
      const recovered = async () =>
        (await victim.commands.run('echo recovered', { timeoutMs: 10_000 }).catch(() => undefined))?.stdout ===
        'recovered\n';
      await waitFor(recovered, 'the victim to answer again', 90_000);
      await neighbourIsFine();
    });

    test('deleting both leaves nothing', async () => {
      await victim.kill();
      await neighbour.kill();
      assert.deepEqual(leftovers(daemon.home), []);
    });
  });
}
