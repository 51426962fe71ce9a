import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { DenError, decodeJson, FrameType } from '@den/shared';
import { AgentClient } from '../src/client.js';
import { agentForSuite, eventually, uniqueCase } from './agent-fixture.js';

const NOBODY_UID = '65534';

describe('agent: exec over pipes', () => {
  const agent = agentForSuite('exec', { sandboxEnv: { FROM_SANDBOX: 'sandbox', OVERRIDDEN: 'sandbox' } });
  let client: AgentClient;

  before(() => {
    client = agent().client;
  });

  it('answers health', async () => {
    const health = await client.health();
    assert.equal(health.pid, agent().child.pid);
    assert.equal(typeof health.version, 'string');
    assert.ok(health.uptimeMs >= 0);
    assert.equal(typeof health.processes, 'number');
  });

  it('returns stdout, stderr and exit codes', async () => {
    const ok = await client.run({ cmd: ['sh', '-c', 'echo out; echo err >&2'] });
    assert.equal(ok.stdout, 'out\n');
    assert.equal(ok.stderr, 'err\n');
    assert.deepEqual(ok.exit, { exitCode: 0, signal: null, timedOut: false });
    assert.ok(ok.pid > 0);
    const failed = await client.run({ cmd: ['sh', '-c', 'exit 42'] });
    assert.equal(failed.exit.exitCode, 42);
  });

  it('passes argv verbatim, without a shell', async () => {
    const r = await client.run({ cmd: ['printf', '%s|', 'a b', '$HOME', '*'] });
    assert.equal(r.stdout, 'a b|$HOME|*|');
  });

  it('builds the environment: defaults < sandbox env < request env', async () => {
    const r = await client.run({ cmd: ['env'], env: { OVERRIDDEN: 'request', EXTRA: 'x' } });
    const env = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.equal(env.FROM_SANDBOX, 'sandbox');
    assert.equal(env.OVERRIDDEN, 'request');
    assert.equal(env.EXTRA, 'x');
    assert.equal(env.USER, 'nobody');
    assert.equal(env.LOGNAME, 'nobody');
    assert.equal(env.HOME, '/nonexistent');
    assert.equal(env.LANG, 'C.UTF-8');
    assert.match(env.PATH ?? '', /\/usr\/bin/);
    assert.equal(env.TERM, undefined, 'TERM is only set for a PTY');
    assert.equal(env.DEN_AGENT_SOCKET, undefined, "the agent's own environment must not leak");
    const root = await client.run({ cmd: ['sh', '-c', 'echo $HOME $USER'], user: 'root' });
    assert.equal(root.stdout, '/root root\n');
  });

  it('runs as the default user, a named user or a numeric uid', async () => {
    assert.equal((await client.run({ cmd: ['id', '-u'] })).stdout, `${NOBODY_UID}\n`);
    assert.equal((await client.run({ cmd: ['id', '-u'], user: 'root' })).stdout, '0\n');
    assert.equal((await client.run({ cmd: ['id', '-u'], user: NOBODY_UID })).stdout, `${NOBODY_UID}\n`);
    // Children get no supplementary groups (in particular none of root's).
    assert.equal((await client.run({ cmd: ['id', '-G'] })).stdout.trim(), '65534');
  });

  it('uses the cwd asked for, else the home, else /', async () => {
    const dir = join(agent().dir, 'work');
    await mkdir(dir);
    assert.equal((await client.run({ cmd: ['pwd'], cwd: dir })).stdout, `${dir}\n`);
    // nobody's home (/nonexistent) does not exist
    assert.equal((await client.run({ cmd: ['pwd'] })).stdout, '/\n');
    assert.equal((await client.run({ cmd: ['pwd'], user: 'root' })).stdout, '/root\n');
  });

  it('feeds stdin, and closes it when the request ends', async () => {
    const r = await client.run({ cmd: ['sh', '-c', 'cat; echo end'] }, { stdin: 'some input\n' });
    assert.equal(r.stdout, 'some input\nend\n');
    const empty = await client.run({ cmd: ['cat'] });
    assert.equal(empty.stdout, '');
  });

  it('streams stdin frames and STDIN_EOF on an open stream', async () => {
    const h = await client.openProcess({ cmd: ['sh', '-c', 'read a; echo "got $a"; cat'] });
    h.writeStdin('first\n');
    h.writeStdin('second');
    h.closeStdin();
    const r = await h.wait();
    assert.equal(r.stdout, 'got first\nsecond');
    assert.equal(r.exit.exitCode, 0);
  });

  it('delivers signals to the process group', async () => {
    const h = await client.openProcess({ cmd: ['sleep', '100'] });
    h.signal('SIGTERM');
    const r = await h.wait();
    assert.deepEqual(r.exit, { exitCode: null, signal: 'SIGTERM', timedOut: false });

    const h2 = await client.openProcess({ cmd: ['sh', '-c', 'echo ready; sleep 100'] });
    const frames = h2.frames();
    const started = (await frames.next()).value;
    assert.equal(started?.type, FrameType.STARTED);
    const pid = decodeJson<{ pid: number }>(started as never).pid;
    assert.equal((await frames.next()).value?.type, FrameType.STDOUT);
    await client.signal(pid, 'INT');
    let exit: unknown;
    for await (const f of frames) if (f.type === FrameType.EXIT) exit = decodeJson(f);
    assert.deepEqual(exit, { exitCode: null, signal: 'SIGINT', timedOut: false });

    await assert.rejects(client.signal(pid, 'SIGTERM'), { code: 'PROCESS_NOT_FOUND' });
    await assert.rejects(client.signal(999_999_999, 'SIGTERM'), { code: 'PROCESS_NOT_FOUND' });
  });

  it('rejects an unknown signal name', async () => {
    const h = await client.openProcess({ cmd: ['sleep', '100'], background: true });
    const pid = (await firstFrameJson<{ pid: number }>(h.frames())).pid;
    h.close();
    try {
      await assert.rejects(client.signal(pid, 'SIGNOPE'), (err: DenError) => {
        assert.equal(err.code, 'INVALID_ARGUMENT');
        assert.match(err.message, /SIGTERM/);
        return true;
      });
    } finally {
      await client.signal(pid, 'SIGKILL');
    }
  });

  it('kills the whole process group when timeoutMs passes', async () => {
    const tag = uniqueCase();
    const started = performance.now();
    const r = await client.run({ cmd: ['sh', '-c', 'sleep 100 & sleep 100'], timeoutMs: 300, env: tag.env });
    const took = performance.now() - started;
    assert.deepEqual(r.exit, { exitCode: null, signal: 'SIGKILL', timedOut: true });
    assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
    assert.ok(
      await eventually(async () => (await agent().leftovers(tag.entry)).length === 0),
      'the background sleep survived',
    );
  });

  it('kills a foreground process when its client stream is reset', async () => {
    const tag = uniqueCase();
    const h = await client.openProcess({ cmd: ['sh', '-c', 'sleep 100 & echo ready; sleep 100'], env: tag.env });
    const frames = h.frames();
    await frames.next(); // STARTED
    const out = (await frames.next()).value;
    assert.equal(Buffer.from(out?.payload ?? []).toString(), 'ready\n');
    assert.equal((await agent().leftovers(tag.entry)).length, 3, 'sh and two sleeps run');
    h.close();
    assert.ok(
      await eventually(async () => (await agent().leftovers(tag.entry)).length === 0),
      'the process outlived its client',
    );
  });

  it('reports a missing executable', async () => {
    await assert.rejects(client.run({ cmd: ['definitely-not-installed'] }), (err: DenError) => {
      assert.ok(err instanceof DenError);
      assert.equal(err.code, 'EXECUTABLE_NOT_FOUND');
      assert.match(err.message, /executable not found in the sandbox: definitely-not-installed/);
      return true;
    });
    await assert.rejects(client.run({ cmd: ['/no/such/program'] }), { code: 'EXECUTABLE_NOT_FOUND' });
  });

  it('reports a file that is not executable', async () => {
    const script = join(agent().dir, 'script.sh');
    await writeFile(script, '#!/bin/sh\necho hi\n');
    await chmod(script, 0o644);
    await assert.rejects(client.run({ cmd: [script] }), (err: DenError) => {
      assert.equal(err.code, 'EXECUTABLE_NOT_FOUND');
      assert.match(err.message, /not executable/);
      return true;
    });
    // Executable by its owner (root) only: still not for nobody.
    await chmod(script, 0o700);
    await assert.rejects(client.run({ cmd: [script] }), { code: 'EXECUTABLE_NOT_FOUND' });
    assert.equal((await client.run({ cmd: [script], user: 'root' })).stdout, 'hi\n');
  });

  it('reports a missing working directory, naming it', async () => {
    await assert.rejects(client.run({ cmd: ['ls'], cwd: '/no/such/dir' }), (err: DenError) => {
      assert.equal(err.code, 'FILE_NOT_FOUND');
      assert.match(err.message, /\/no\/such\/dir/);
      return true;
    });
  });

  it('reports an unknown user', async () => {
    await assert.rejects(client.run({ cmd: ['id'], user: 'bob' }), (err: DenError) => {
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.message, /unknown user 'bob' in this sandbox/);
      return true;
    });
  });

  it('rejects a malformed spec', async () => {
    await assert.rejects(client.run({ cmd: [] }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(client.run({ cmd: ['true'], timeoutMs: -1 }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(client.run({ cmd: ['true'], env: { A: 1 as unknown as string } }), {
      code: 'INVALID_ARGUMENT',
    });
  });

  it('keeps up with output larger than the flow-control windows', async () => {
    const r = await client.run({ cmd: ['head', '-c', String(20 * 1024 * 1024), '/dev/zero'] });
    assert.equal(r.stdout.length, 20 * 1024 * 1024);
    assert.equal(r.exit.exitCode, 0);
  });

  it('does not hold EXIT back for a descendant that keeps the pipes open', async () => {
    const tag = uniqueCase();
    const started = performance.now();
    const r = await client.run({ cmd: ['sh', '-c', 'sleep 5 & echo parent done'], env: tag.env });
    assert.equal(r.stdout, 'parent done\n');
    assert.ok(performance.now() - started < 2000);
    for (const pid of await agent().leftovers(tag.entry)) process.kill(pid, 'SIGKILL');
  });

  it('measures the exec round trip (logged, not asserted)', async (t) => {
    for (let i = 0; i < 20; i++) await client.run({ cmd: ['true'] });
    const agentTimes: number[] = [];
    const rawTimes: number[] = [];
    for (let i = 0; i < 100; i++) {
      let start = performance.now();
      await client.run({ cmd: ['true'] });
      agentTimes.push(performance.now() - start);
      start = performance.now();
      await new Promise((resolve) => spawn('true', [], { stdio: 'pipe' }).once('close', resolve));
      rawTimes.push(performance.now() - start);
    }
    const line = `exec round trip of \`true\` through the agent: p50 ${pct(agentTimes, 50)} ms, p90 ${pct(agentTimes, 90)} ms; raw spawn+wait of \`true\` in the test process: p50 ${pct(rawTimes, 50)} ms`;
    t.diagnostic(line);
    console.log(line);
  });

  it('answers AGENT_UNAVAILABLE when nothing listens', async () => {
    const nowhere = new AgentClient(join(agent().dir, 'no-such.sock'));
    try {
      await assert.rejects(nowhere.health(), (err: DenError) => {
        assert.equal(err.code, 'AGENT_UNAVAILABLE');
        assert.match(err.message, /ENOENT/);
        return true;
      });
      const start = performance.now();
      await assert.rejects(nowhere.waitReady(100), { code: 'AGENT_UNAVAILABLE' });
      assert.ok(performance.now() - start < 1000);
    } finally {
      await nowhere.close();
    }
  });
});

function pct(values: number[], p: number): string {
  const sorted = [...values].sort((a, b) => a - b);
  return (sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number).toFixed(2);
}

async function firstFrameJson<T>(frames: AsyncGenerator<{ type: number; payload: Uint8Array }>): Promise<T> {
  const first = await frames.next();
  assert.equal(first.value?.type, FrameType.STARTED);
  return decodeJson<T>(first.value as never);
}
