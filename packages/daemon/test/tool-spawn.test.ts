import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DenError } from '@den/shared';
import { command } from '../src/command.js';
import { runBinary, spawnBinary } from '../src/runtime/run-binary.js';
import { startToolSpawner } from '../src/tool-spawn.js';

/** The name of the process that started the one `sh -c` reports as its parent. */
async function parentOfShell(): Promise<string> {
  const ppid = (await command('sh', ['-c', 'echo $PPID'])).trim();
  return readFileSync(`/proc/${ppid}/comm`, 'utf8').trim();
}

// run-binary.test.ts covers the same calls without the helper (Node's spawn).
describe('tools started through den-spawn', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'den-tools-'));
    assert.equal(startToolSpawner(join(dir, 'run')), true, 'den-spawn is built (npm run build)');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts them from den-spawn, not by forking this process', async () => {
    assert.equal(await parentOfShell(), 'den-spawn');
  });

  it('returns stdout, writes the input to stdin, and finds the binary on PATH', async () => {
    assert.equal(await command('sh', ['-c', 'read a; read b; echo "$b $a"'], { input: 'one\ntwo\n' }), 'two one\n');
  });

  it('gives a tool without input an empty stdin', async () => {
    assert.equal(await command('cat', []), '');
  });

  it('reports a failure with what the tool printed', async () => {
    await assert.rejects(command('sh', ['-c', 'echo "no such device" >&2; exit 2']), (err: DenError) => {
      assert.equal(err.code, 'INTERNAL');
      assert.equal(err.message, 'sh -c echo "no such device" >&2; exit 2 failed: no such device');
      return true;
    });
  });

  it('reports a binary that is not on PATH, and a runtime binary that does not exist', async () => {
    await assert.rejects(
      command('den-no-such-tool', ['x']),
      /den-no-such-tool x failed: spawn den-no-such-tool ENOENT/,
    );
    await assert.rejects(runBinary('/nonexistent/runsc', ['state'], { runtime: 'runsc' }), (err: DenError) => {
      assert.equal(err.code, 'RUNTIME_UNAVAILABLE');
      return true;
    });
  });

  it('kills a tool that runs past its timeout', async () => {
    const t0 = Date.now();
    await assert.rejects(command('sleep', ['10'], { timeoutMs: 200 }), /killed by SIGKILL \(timeout 200 ms\)/);
    await assert.rejects(runBinary('sleep', ['10'], { runtime: 'sleep', timeoutMs: 200 }), /timed out after 200 ms/);
    assert.ok(Date.now() - t0 < 5000);
  });

  it('runs each tool in its own session, with the exit code and output of a runtime binary', async () => {
    const exit = await spawnBinary('sh', ['-c', 'ps -o sid= -p $$; echo err >&2; exit 4'], { runtime: 'sh' });
    assert.deepEqual({ code: exit.code, stderr: exit.stderr }, { code: 4, stderr: 'err\n' });
    const { stdout: mine } = await spawnBinary('ps', ['-o', 'sid=', '-p', String(process.pid)], { runtime: 'ps' });
    assert.notEqual(Number(exit.stdout.trim()), Number(mine.trim()));
  });

  it('hands an open descriptor to the binary through Node spawn (den-spawn cannot pass one)', async () => {
    const log = join(dir, 'out.log');
    const fd = openSync(log, 'w');
    try {
      const exit = await spawnBinary('sh', ['-c', 'echo into-the-log'], { runtime: 'sh', outputFd: fd });
      assert.equal(exit.code, 0);
    } finally {
      closeSync(fd);
    }
    assert.equal(readFileSync(log, 'utf8'), 'into-the-log\n');
  });

  it('many at once', async () => {
    const outs = await Promise.all(Array.from({ length: 40 }, (_, i) => command('sh', ['-c', `echo ${i}`])));
    assert.deepEqual(
      outs,
      Array.from({ length: 40 }, (_, i) => `${i}\n`),
    );
  });
});
