import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { startAgent, stopProcess } from './agent-fixture.js';
import { OutputReader } from './output-reader.js';

describe('agent: shutdown', () => {
  it('on SIGTERM stops every process (SIGKILL after 2 s for those ignoring SIGTERM), then exits 0', async () => {
    const agent = await startAgent();
    try {
      const { client } = agent;
      const foreground = new OutputReader(await client.openProcess({ cmd: ['sh', '-c', 'echo up; sleep 1000'] }));
      await foreground.waitFor('up');
      const background = await client.openProcess({ cmd: ['sleep', '1000'], background: true });
      const bgPid = await new OutputReader(background).pid();
      background.close();
      // SIG_IGN survives exec, so this sh and its sleep both ignore SIGTERM.
      const stubborn = new OutputReader(
        await client.openProcess({ cmd: ['sh', '-c', 'trap "" TERM; sleep 1000 & echo up; wait'] }),
      );
      await stubborn.waitFor('up');
      assert.equal((await agent.leftovers()).length, 5);
      assert.ok(bgPid > 0);

      const start = performance.now();
      const code = await stopProcess(agent.child);
      const took = performance.now() - start;
      assert.equal(code, 0, agent.logs());
      assert.ok(took >= 1900 && took < 4500, `shutdown took ${took} ms`);
      assert.deepEqual(await foreground.exit(), { exitCode: null, signal: 'SIGTERM', timedOut: false });
      assert.deepEqual(await stubborn.exit(), { exitCode: null, signal: 'SIGKILL', timedOut: false });
      assert.deepEqual(await agent.leftovers(), []);
      assert.equal(existsSync(agent.socketPath), false, 'the socket file is removed');
    } finally {
      await agent.stop();
    }
  });

  it('exits at once on SIGTERM when nothing runs', async () => {
    const agent = await startAgent();
    try {
      const start = performance.now();
      assert.equal(await stopProcess(agent.child), 0);
      assert.ok(performance.now() - start < 1500);
    } finally {
      await agent.stop();
    }
  });

  it('replaces the socket file an agent killed with SIGKILL left behind', async () => {
    const first = await startAgent();
    let second: Awaited<ReturnType<typeof startAgent>> | undefined;
    try {
      first.child.kill('SIGKILL');
      await new Promise((resolve) => first.child.once('exit', resolve));
      assert.ok(existsSync(first.socketPath), 'the killed agent left its socket file');
      second = await startAgent({ socketPath: first.socketPath });
      assert.equal((await second.client.health()).pid, second.child.pid);
    } finally {
      await second?.stop();
      await first.stop();
    }
  });
});
