/** ensureAgentRoot with the repository's built agent; the node in the root runs the agent's dependencies. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureAgentRoot } from '../../src/runtime/agent-root.js';
import { SPAWNER_ENTRY } from '../../src/runtime/oci-spec.js';

const REPO_ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
const built = existsSync(join(REPO_ROOT, 'packages/agent/dist/src/main.js'));

describe('ensureAgentRoot', { skip: built ? false : 'the agent is not built: run npm run build' }, () => {
  let dir: string;
  let root: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'den-agentroot-'));
    root = await ensureAgentRoot(dir, REPO_ROOT);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lays out node, its loader and libraries, tini, the guard and the agent', () => {
    for (const f of [
      'bin/node',
      'bin/tini',
      'lib/ld-linux-x86-64.so.2',
      'lib/libc.so.6',
      'lib/libstdc++.so.6',
      'guard/oom-guard.mjs',
      'agent/packages/agent/dist/src/main.js',
      'agent/packages/agent/dist/agent.bundle.mjs',
      'agent/packages/agent/package.json',
      'agent/node_modules/@den/shared/package.json',
      'agent/node_modules/node-pty/package.json',
    ]) {
      assert.ok(existsSync(join(root, f)), f);
    }
    assert.equal(existsSync(join(root, 'agent/packages/agent/dist/test')), false, 'tests are not shipped');
    // den-spawn, the agent's process starter, keeps its executable bit; the agent's modules do not get one
    assert.equal(statSync(join(root, SPAWNER_ENTRY)).mode & 0o777, 0o755);
    assert.equal(statSync(join(root, 'agent/packages/agent/dist/agent.bundle.mjs')).mode & 0o777, 0o644);
    assert.equal(existsSync(join(root, 'agent/node_modules/node-pty/prebuilds/darwin-x64')), false);
  });

  it('is content-addressed and reused', async () => {
    const t0 = performance.now();
    assert.equal(await ensureAgentRoot(dir, REPO_ROOT), root);
    assert.ok(performance.now() - t0 < 5000);
    assert.deepEqual(
      (await readdir(dir)).filter((e) => !e.startsWith('.')),
      [root.slice(dir.length + 1)],
    );
  });

  it("runs the agent's dependencies (incl. the node-pty addon) on its own loader and libraries", () => {
    const script =
      "const r=require('module').createRequire(process.argv[1]);r('node-pty');" +
      "import(r.resolve('@den/shared')).then(m=>console.log(typeof m.DenError))";
    const r = spawnSync(
      join(root, 'lib/ld-linux-x86-64.so.2'),
      [
        '--library-path',
        join(root, 'lib'),
        join(root, 'bin/node'),
        '-e',
        script,
        join(root, 'agent/packages/agent/dist/src/main.js'),
      ],
      { encoding: 'utf8', env: {} },
    );
    assert.equal(r.stdout, 'function\n', r.stderr);
  });
});
