import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox, SandboxNotFoundError, SandboxNotRunningError } from '@den/sdk';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/** The whole life of a sandbox through the SDK against a real daemon, on both runtimes. */
for (const runtime of ['runsc', 'runc'] as const) {
  describe(`sandbox lifecycle on ${runtime}`, () => {
    let daemon: TestDaemon;
    let sbx: Sandbox;
    before(async () => {
      daemon = await startDaemon();
      sbx = await Sandbox.create({
        url: daemon.url,
        runtime,
        name: 'dev',
        env: { FOO: 'bar' },
        memoryMB: 512,
        diskMB: 1024,
      });
    });
    after(async () => destroyDaemon(daemon));

    test('runs commands as the image user with the sandbox env', async () => {
      const r = await sbx.commands.run("python3 -c 'print(6*7)'");
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, '42\n');
      const who = await sbx.commands.run(['sh', '-c', 'id -u; id -un; pwd; echo $FOO; echo $HOME']);
      assert.equal(who.stdout, '1000\nuser\n/home/user\nbar\n/home/user\n');
      const root = await sbx.commands.run(['sh', '-c', 'id -u; pwd; echo $A'], {
        user: 'root',
        cwd: '/tmp',
        env: { A: '1' },
      });
      assert.equal(root.stdout, '0\n/tmp\n1\n');
      const fail = await sbx.commands.run('echo oops >&2; exit 3');
      assert.equal(fail.exitCode, 3);
      assert.equal(fail.stderr, 'oops\n');
    });

    test('streams output as it is produced', async () => {
      const seen: { text: string; at: number }[] = [];
      const start = Date.now();
      await sbx.commands.run('echo one; sleep 0.5; echo two', {
        onStdout: (text: string) => seen.push({ text, at: Date.now() - start }),
      });
      assert.equal(seen.map((s) => s.text).join(''), 'one\ntwo\n');
      assert.ok(seen.length >= 2, 'output arrives in at least two pieces');
      assert.ok(seen[0]!.at < seen.at(-1)!.at - 300, 'the first line arrived before the sleep ended');
    });

    test('files: write, read, list, stat, mkdir, move, remove', async () => {
      await sbx.files.write('/home/user/a.txt', 'hi');
      assert.equal(await sbx.files.read('/home/user/a.txt'), 'hi');
      const owner = await sbx.commands.run('stat -c %U /home/user/a.txt');
      assert.equal(owner.stdout.trim(), 'user');
      await sbx.files.makeDir('/home/user/d/e');
      await sbx.files.move('/home/user/a.txt', '/home/user/d/e/b.txt');
      const list = await sbx.files.list('/home/user/d/e');
      assert.deepEqual(
        list.map((e) => [e.name, e.type, e.size]),
        [['b.txt', 'file', 2]],
      );
      assert.equal((await sbx.files.stat('/home/user/d')).type, 'dir');
      assert.equal(await sbx.files.exists('/home/user/a.txt'), false);
      await sbx.files.remove('/home/user/d');
      assert.equal(await sbx.files.exists('/home/user/d'), false);
      const bytes = new Uint8Array([0, 1, 2, 255]);
      await sbx.files.write('/tmp/bin', bytes);
      assert.deepEqual([...(await sbx.files.read('/tmp/bin', { format: 'bytes' }))], [0, 1, 2, 255]);
    });

    test('a PTY runs a shell, echoes input and follows resizes', async () => {
      let out = '';
      const pty = await sbx.pty.create({
        cols: 80,
        rows: 24,
        onData: (d: Uint8Array) => (out += Buffer.from(d).toString()),
      });
      await pty.sendInput('stty size; echo marker-$((40+2))\n');
      await waitFor(() => out.includes('marker-42'), 'shell output');
      assert.match(out, /24 80/);
      await pty.resize({ cols: 100, rows: 30 });
      await pty.sendInput('stty size\n');
      await waitFor(() => /30 100/.test(out), 'resized size');
      await pty.sendInput('exit 7\n');
      const exit = await pty.wait();
      assert.equal(exit.exitCode, 7);
    });

    test('background processes can be listed, reconnected to and killed', async () => {
      const handle = await sbx.commands.run(
        'for i in 1 2 3 4 5 6 7 8 9 10; do echo tick$i; sleep 0.2; done; sleep 100',
        {
          background: true,
        },
      );
      assert.ok(handle.pid > 0);
      await handle.disconnect();
      const listed = await sbx.commands.list();
      assert.ok(listed.some((p) => p.pid === handle.pid));
      let seen = '';
      const again = await sbx.commands.connect(handle.pid, { onStdout: (t: string) => (seen += t) });
      await waitFor(() => seen.includes('tick3'), 'reconnected output');
      await sbx.commands.kill(handle.pid);
      const result = await again.wait();
      assert.equal(result.exitCode, null);
      assert.equal(result.signal, 'SIGKILL');
    });

    test('stop keeps files, refuses exec, and start brings everything back', async () => {
      await sbx.files.write('/home/user/keep.txt', 'survives');
      await sbx.commands.run('sudo -n true 2>/dev/null; echo upper > /tmp/in-tmp');
      await sbx.stop();
      assert.equal((await sbx.info()).state, 'stopped');
      await assert.rejects(sbx.commands.run('true'), SandboxNotRunningError);
      assert.deepEqual(leftovers(daemon.home), [], 'a stopped sandbox holds no mounts, loop devices or containers');
      await sbx.start();
      assert.equal(await sbx.files.read('/home/user/keep.txt'), 'survives');
      assert.equal(await sbx.files.read('/tmp/in-tmp'), 'upper\n');
      await sbx.restart();
      assert.equal((await sbx.commands.run('cat /home/user/keep.txt')).stdout, 'survives');
    });

    test('the sandbox is found by name and listed; delete removes every trace', async () => {
      const byName = await Sandbox.connect('dev', { url: daemon.url });
      assert.equal(byName.id, sbx.id);
      const list = await Sandbox.list({ url: daemon.url });
      assert.ok(list.some((s) => s.id === sbx.id && s.runtime === runtime && s.state === 'running'));
      await sbx.kill();
      await assert.rejects(sbx.info(), SandboxNotFoundError);
      assert.deepEqual(leftovers(daemon.home), []);
    });
  });
}
