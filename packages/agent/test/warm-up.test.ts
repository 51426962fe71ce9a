import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { eventually, startAgent } from './agent-fixture.js';

describe('agent: warm-up at start', () => {
  it('runs `true` once through the launch path as the default user, and lists nothing', async () => {
    // A `true` of our own, first on the sandbox PATH, that leaves a trace of who ran it.
    const bin = await mkdtemp(join(tmpdir(), 'den-warm-'));
    await chmod(bin, 0o777);
    const trace = join(bin, 'trace');
    await writeFile(join(bin, 'true'), `#!/bin/sh\nid -un >> ${trace}\n`, { mode: 0o755 });
    const agent = await startAgent({ sandboxEnv: { PATH: `${bin}:/usr/bin:/bin` } });
    try {
      const ran = await eventually(async () => (await readFile(trace, 'utf8').catch(() => '')) !== '');
      assert.ok(ran, `the warm-up did not run ${join(bin, 'true')}\n${agent.logs()}`);
      assert.equal(await readFile(trace, 'utf8'), 'nobody\n', 'once, as the default user');
      assert.deepEqual(await agent.client.listProcesses(), [], 'the warm-up is not a user process');
    } finally {
      await agent.stop();
      await rm(bin, { recursive: true, force: true });
    }
  });
});
