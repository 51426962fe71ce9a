import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentForSuite, eventually } from './agent-fixture.js';

/** Which process started a command: den-spawn (the normal way) or the agent itself (fallback without it). */
const PARENT = ['sh', '-c', 'cat /proc/$PPID/comm'];

describe('agent: den-spawn starts pipe processes', () => {
  const agent = agentForSuite('den-spawn');

  it('starts commands from den-spawn, with exit codes, signals and both outputs', async () => {
    const client = agent().client;
    const parent = await client.run({ cmd: PARENT });
    assert.equal(parent.stdout.trim(), 'den-spawn');
    const r = await client.run({ cmd: ['sh', '-c', 'echo out; echo err >&2; exit 7'] });
    assert.deepEqual([r.stdout, r.stderr, r.exit.exitCode], ['out\n', 'err\n', 7]);
    const killed = await client.run({ cmd: ['sh', '-c', 'kill -TERM $$'] });
    assert.deepEqual([killed.exit.exitCode, killed.exit.signal], [null, 'SIGTERM']);
  });

  it("gives the child its own session, an empty signal mask and none of den-spawn's descriptors", async () => {
    const r = await agent().client.run({
      user: 'root',
      cmd: [
        'sh',
        '-c',
        // own fds beyond stdio, then den-spawn's control pipes (its fds 0 and 1)
        'ps -o pid=,pgid=,sid= -p $$; ' +
          'for f in /proc/$$/fd/*; do [ $(basename $f) -gt 2 ] && readlink $f; done; echo --; ' +
          'readlink /proc/$PPID/fd/0 /proc/$PPID/fd/1',
      ],
    });
    const [ids, ...rest] = r.stdout.trim().split('\n');
    const [pid, pgid, sid] = ids!.trim().split(/\s+/).map(Number);
    assert.equal(pgid, pid);
    assert.equal(sid, pid);
    // read by the started process itself: a shell blocks signals around its own forks
    const mask = await agent().client.run({ cmd: ['grep', '-E', '^Sig(Blk|Ign)', '/proc/self/status'] });
    assert.match(mask.stdout, /^SigBlk:\s+0+\nSigIgn:\s+0+\n$/);
    const own = rest.slice(0, rest.indexOf('--'));
    const spawnerPipes = rest.slice(rest.indexOf('--') + 1);
    assert.equal(spawnerPipes.length, 2);
    assert.deepEqual(
      own.filter((t) => t.startsWith('socket:') || t.includes('signalfd') || spawnerPipes.includes(t)),
      [],
    );
  });

  it('starts many processes at once', async () => {
    const client = agent().client;
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.run({ cmd: ['sh', '-c', `echo ${i}`] })),
    );
    assert.deepEqual(
      runs.map((r) => r.stdout),
      runs.map((_, i) => `${i}\n`),
    );
  });
});

describe('agent: without den-spawn', () => {
  const agent = agentForSuite('no den-spawn', { env: { DEN_SPAWNER: '' } });

  it('forks itself to start processes', async () => {
    const r = await agent().client.run({ cmd: PARENT });
    assert.equal(r.stdout.trim(), 'den-agent');
    assert.equal(await eventually(async () => (await agent().client.run({ cmd: ['true'] })).exit.exitCode === 0), true);
  });
});
