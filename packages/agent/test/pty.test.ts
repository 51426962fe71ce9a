import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentForSuite } from './agent-fixture.js';
import { OutputReader } from './output-reader.js';

describe('agent: PTY', () => {
  const agent = agentForSuite('PTY');

  it('runs a command on a terminal of the requested size, output as STDOUT', async () => {
    const r = await agent().client.run({
      cmd: ['sh', '-c', 'stty size; test -t 0 && echo tty; echo $TERM; id -u; echo err >&2'],
      pty: { cols: 91, rows: 27 },
    });
    assert.equal(r.stdout, '27 91\r\ntty\r\nxterm-256color\r\n65534\r\nerr\r\n');
    assert.equal(r.stderr, '');
    assert.equal(r.exit.exitCode, 0);
  });

  it('takes input and shows resizes (RESIZE frame and the resize endpoint)', async () => {
    const h = await agent().client.openProcess({ cmd: ['sh'], pty: { cols: 80, rows: 24 } });
    const reader = new OutputReader(h);
    const pid = await reader.pid();
    h.writeStdin('stty size\n');
    await reader.waitFor('24 80');
    h.resize({ cols: 132, rows: 50 });
    h.writeStdin('stty size\n');
    await reader.waitFor('50 132');
    await agent().client.resize(pid, { cols: 100, rows: 40 });
    h.writeStdin('stty size\n');
    await reader.waitFor('40 100');
    h.writeStdin('exit 3\n');
    const exit = await reader.exit();
    assert.equal(exit.exitCode, 3);
  });

  it('ends input with ^D on STDIN_EOF', async () => {
    const h = await agent().client.openProcess({ cmd: ['cat'], pty: { cols: 80, rows: 24 } });
    h.writeStdin('abc\n');
    h.closeStdin();
    const r = await h.wait();
    assert.match(r.stdout, /abc/);
    assert.equal(r.exit.exitCode, 0);
  });

  it('rejects a bad size and resizing a process without a terminal', async () => {
    await assert.rejects(agent().client.run({ cmd: ['true'], pty: { cols: 0, rows: 24 } }), {
      code: 'INVALID_ARGUMENT',
    });
    const h = await agent().client.openProcess({ cmd: ['sleep', '100'], background: true });
    const reader = new OutputReader(h);
    const pid = await reader.pid();
    try {
      await assert.rejects(agent().client.resize(pid, { cols: 80, rows: 24 }), { code: 'INVALID_ARGUMENT' });
    } finally {
      await agent().client.signal(pid, 'SIGKILL');
      await reader.exit();
    }
  });
});
