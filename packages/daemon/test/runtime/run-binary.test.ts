import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { DenError } from '@den/shared';
import { runBinary, spawnBinary, subcommandOf } from '../../src/runtime/run-binary.js';

describe('runBinary', () => {
  it('resolves with the output of a zero exit', async () => {
    assert.deepEqual(await runBinary('sh', ['-c', 'echo out; echo err >&2'], { runtime: 'sh' }), {
      stdout: 'out\n',
      stderr: 'err\n',
    });
  });

  it('turns a failure into RUNTIME_FAILED "<runtime> <subcommand> failed: <stderr>"', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'den-runbin-'));
    const fake = join(dir, 'fake-runtime');
    await writeFile(fake, '#!/bin/sh\necho "container does not exist" >&2\nexit 3\n', { mode: 0o755 });
    try {
      await assert.rejects(runBinary(fake, ['--root', '/x', 'state', 'abc'], { runtime: 'fake' }), (err: DenError) => {
        assert.equal(err.code, 'RUNTIME_FAILED');
        assert.equal(err.message, 'fake state failed: container does not exist (exit code 3)');
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps the start and the end of a very long failure text (what failed comes first, then a dump)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'den-runbin-'));
    const fake = join(dir, 'fake-runtime');
    const dump = 'x'.repeat(10_000);
    await writeFile(
      fake,
      `#!/bin/sh\necho "endpoint cannot be saved in connected state ${dump} the end" >&2\nexit 1\n`,
      {
        mode: 0o755,
      },
    );
    try {
      await assert.rejects(runBinary(fake, ['checkpoint', 'abc'], { runtime: 'fake' }), (err: DenError) => {
        assert.ok(err.message.length < 4200, `${err.message.length} characters`);
        assert.match(
          err.message,
          /^fake checkpoint failed: endpoint cannot be saved in connected state x+ \[\.\.\. \d+ characters \.\.\.\] x+ the end \(exit code 1\)$/,
        );
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the subcommand after global flags', () => {
    assert.equal(subcommandOf(['--root', '/x', '--platform=systrap', 'create', '--bundle', 'b', 'id']), 'create');
  });

  it('reports a missing binary as RUNTIME_UNAVAILABLE', async () => {
    await assert.rejects(runBinary('/nonexistent/runsc', ['state'], { runtime: 'runsc' }), (err: DenError) => {
      assert.equal(err.code, 'RUNTIME_UNAVAILABLE');
      return true;
    });
  });

  it('kills a binary that runs past its timeout', async () => {
    const t0 = Date.now();
    await assert.rejects(runBinary('sleep', ['10'], { runtime: 'sleep', timeoutMs: 200 }), /timed out after 200 ms/);
    assert.ok(Date.now() - t0 < 5000);
  });

  it('runs the binary in its own process group, away from the daemon', async () => {
    const { stdout } = await spawnBinary('sh', ['-c', 'ps -o pgid= -p $$'], { runtime: 'sh' });
    const ownGroup = Number(stdout.trim());
    assert.ok(ownGroup > 0);
    const { stdout: mine } = await spawnBinary('ps', ['-o', 'pgid=', '-p', String(process.pid)], { runtime: 'ps' });
    assert.notEqual(ownGroup, Number(mine.trim()));
  });
});
