import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from '@den/sdk';
import { destroyDaemon, startDaemon, type TestDaemon } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/** 20 gVisor sandboxes at once on this 2-core machine: all come up, all answer, all go away cleanly. */
describe('20 runsc sandboxes at once', () => {
  let daemon: TestDaemon;
  const sandboxes: Sandbox[] = [];
  before(async () => {
    daemon = await startDaemon();
  });
  after(async () => destroyDaemon(daemon));

  test('create 20 (4 at a time), exec in each, delete all', async () => {
    for (let i = 0; i < 20; i += 4) {
      const batch = await Promise.all(
        [0, 1, 2, 3].map((j) =>
          Sandbox.create({ url: daemon.url, runtime: 'runsc', name: `s${i + j}`, memoryMB: 256 }),
        ),
      );
      sandboxes.push(...batch);
    }
    const outputs = await Promise.all(sandboxes.map((s) => s.commands.run('hostname')));
    assert.deepEqual(
      outputs.map((o) => o.stdout.trim()),
      sandboxes.map((_, i) => `s${i}`),
    );
    await Promise.all(sandboxes.map((s) => s.kill()));
    assert.deepEqual(leftovers(daemon.home), []);
  });
});
