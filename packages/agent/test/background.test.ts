import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameType } from '@den/shared';
import { agentForSuite, eventually } from './agent-fixture.js';
import { OutputReader } from './output-reader.js';

describe('agent: background processes', () => {
  const agent = agentForSuite('background');

  it('keeps running after its stream closes, is listed, and replays output on connect', async () => {
    const { client } = agent();
    const h = await client.openProcess({
      cmd: ['sh', '-c', 'echo one; read x; echo "got $x"; echo err >&2; sleep 0.1; echo three'],
      background: true,
      tag: 'job-1',
    });
    const first = new OutputReader(h);
    const pid = await first.pid();
    await first.waitFor('one\n');
    h.close();

    await new Promise((r) => setTimeout(r, 50));
    const listed = (await client.listProcesses()).find((p) => p.pid === pid);
    assert.ok(listed, 'the process is listed');
    assert.equal(listed.tag, 'job-1');
    assert.equal(listed.background, true);
    assert.equal(listed.pty, false);
    assert.equal(listed.user, 'nobody');
    assert.deepEqual(listed.cmd.slice(0, 2), ['sh', '-c']);
    assert.equal(listed.exit, undefined);

    await client.sendStdin(pid, 'two\n');
    const again = new OutputReader(await client.connectProcess(pid));
    assert.equal(await again.pid(), pid);
    const exit = await again.exit();
    assert.deepEqual(exit, { exitCode: 0, signal: null, timedOut: false });
    assert.equal(again.output, 'one\ngot two\nthree\n');
    assert.equal(Buffer.from(again.framesOf(FrameType.STDERR)[0]?.payload ?? []).toString(), 'err\n');

    const ended = (await client.listProcesses()).find((p) => p.pid === pid);
    assert.deepEqual(ended?.exit, { exitCode: 0, signal: null, timedOut: false });

    // An ended process can still be connected to: the buffer, then its EXIT.
    const late = new OutputReader(await client.connectProcess(pid));
    assert.deepEqual(await late.exit(), exit);
    assert.equal(late.output, 'one\ngot two\nthree\n');
  });

  it('connect ?from=N replays the output frames from the N-th on (a client continuing where its stream broke)', async () => {
    const { client } = agent();
    const h = await client.openProcess({
      cmd: ['sh', '-c', 'echo a; sleep 0.2; echo b; sleep 0.2; echo c'],
      background: true,
    });
    const first = new OutputReader(h);
    const pid = await first.pid();
    await first.exit();
    assert.equal(first.output, 'a\nb\nc\n');
    const received = first.framesOf(FrameType.STDOUT);
    assert.ok(received.length >= 2, 'the sleeps split the output into frames');
    const text = (frames: typeof received) => frames.map((f) => Buffer.from(f.payload).toString()).join('');
    const rest = new OutputReader(await client.connectProcess(pid, { from: 1 }));
    await rest.exit();
    assert.equal(rest.output, text(received.slice(1)));
    const none = new OutputReader(await client.connectProcess(pid, { from: received.length }));
    await none.exit();
    assert.equal(none.output, '');
    const noReplay = new OutputReader(await client.connectProcess(pid, { replay: false }));
    await noReplay.exit();
    assert.equal(noReplay.output, '');
    await assert.rejects(
      client.connectProcess(pid, { from: -1 }).then((c) => new OutputReader(c).exit()),
      /from must be/,
    );
  });

  it('takes stdin and stdin-eof through the endpoints', async () => {
    const { client } = agent();
    const h = await client.openProcess({ cmd: ['cat'], background: true });
    const reader = new OutputReader(h);
    const pid = await reader.pid();
    h.close();
    await client.sendStdin(pid, 'hello ');
    await client.sendStdin(pid, Buffer.from('world'));
    await client.closeStdin(pid);
    const again = new OutputReader(await client.connectProcess(pid));
    assert.equal((await again.exit()).exitCode, 0);
    assert.equal(again.output, 'hello world');
    await assert.rejects(client.sendStdin(pid, 'late'), { code: 'PROCESS_NOT_FOUND' });
  });

  it('answers a large stdin upload to a process that stops reading and exits', async () => {
    const { client } = agent();
    const h = await client.openProcess({ cmd: ['sh', '-c', 'head -c 10 >/dev/null; sleep 0.2'], background: true });
    const pid = await new OutputReader(h).pid();
    h.close();
    // Far more than the pipe and flow-control buffers hold: the upload waits for the exit, then completes.
    await client.sendStdin(pid, Buffer.alloc(8 * 1024 * 1024, 1));
    const again = new OutputReader(await client.connectProcess(pid));
    assert.equal((await again.exit()).exitCode, 0);
  });

  it('keeps only the last 1 MiB of output', async () => {
    const { client } = agent();
    const size = 3 * 1024 * 1024;
    const h = await client.openProcess({
      cmd: ['sh', '-c', `head -c ${size} /dev/zero | tr '\\0' x; echo; echo tail-marker`],
      background: true,
    });
    const reader = new OutputReader(h);
    const pid = await reader.pid();
    h.close();
    const ended = async (): Promise<boolean> =>
      (await client.listProcesses()).some((p) => p.pid === pid && p.exit !== undefined);
    assert.ok(await eventually(ended), 'the process did not end');
    const conn = new OutputReader(await client.connectProcess(pid));
    await conn.exit();
    const replayed = conn.framesOf(FrameType.STDOUT).reduce((n, f) => n + f.payload.length + 5, 0);
    assert.ok(replayed <= 1024 * 1024, `replayed ${replayed} bytes`);
    assert.ok(replayed > 900 * 1024, `replayed only ${replayed} bytes`);
    assert.ok(conn.output.endsWith('tail-marker\n'));
  });

  it('attaches a second client to a running process; input frames go through either', async () => {
    const { client } = agent();
    const h = await client.openProcess({
      cmd: ['sh', '-c', 'read a; echo "a=$a"; read b; echo "b=$b"'],
      background: true,
    });
    const first = new OutputReader(h);
    const pid = await first.pid();
    const second = new OutputReader(await client.connectProcess(pid));
    h.writeStdin('1\n');
    await second.waitFor('a=1');
    await first.waitFor('a=1');
    const third = await client.connectProcess(pid);
    third.writeStdin('2\n');
    assert.equal((await second.exit()).exitCode, 0);
    third.close();
    assert.equal(second.output, 'a=1\nb=2\n');
    assert.equal((await first.exit()).exitCode, 0);
  });

  it('answers PROCESS_NOT_FOUND for an unknown pid', async () => {
    await assert.rejects(
      agent().client.connectProcess(999_999_999),
      (err: Error & { code?: string; status?: number }) => {
        assert.equal(err.code, 'PROCESS_NOT_FOUND');
        assert.equal(err.status, 404);
        return true;
      },
    );
    await assert.rejects(agent().client.closeStdin(999_999_999), { code: 'PROCESS_NOT_FOUND' });
  });

  it('lists a foreground process only while it runs', async () => {
    const { client } = agent();
    const h = await client.openProcess({ cmd: ['sleep', '100'] });
    const reader = new OutputReader(h);
    const pid = await reader.pid();
    const running = (await client.listProcesses()).find((p) => p.pid === pid);
    assert.equal(running?.background, false);
    assert.equal((await client.health()).processes >= 1, true);
    h.signal('SIGKILL');
    await reader.exit();
    assert.equal(
      (await client.listProcesses()).find((p) => p.pid === pid),
      undefined,
    );
  });
});
