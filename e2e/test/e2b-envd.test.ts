import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { DenClient } from '@den/sdk';
import { CommandExitError, FileNotFoundError, FilesystemEventType, Sandbox, TimeoutError } from 'e2b';
import { type E2BConnection, e2bConnection, envdAccessTokenOf } from '../src/e2b.js';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';

/**
 * The unmodified `e2b` SDK against den's envd API (E2B_SANDBOX_URL = http://<den>/e2b), on real sandboxes.
 *
 * Sandboxes are made the way an E2B application makes them: `Sandbox.create('base')` with a den API key, through
 * den's E2B control API (which secures envd with an access token). E2B has no way to ask for a runtime, so the
 * runc sandbox is created through den's own API and attached with the e2b SDK's `Sandbox.connect(id)`.
 */
async function newSandbox(daemon: TestDaemon, conn: E2BConnection, runtime: 'runsc' | 'runc'): Promise<Sandbox> {
  if (runtime === 'runsc') return Sandbox.create('base', { ...conn, envs: { FROM_CREATE: 'yes' } });
  const den = await new DenClient({ url: daemon.url }).createSandbox({ runtime, env: { FROM_CREATE: 'yes' } });
  return Sandbox.connect(den.id, conn);
}

describe('e2b SDK against den envd (runsc)', () => {
  let daemon: TestDaemon;
  let sbx: Sandbox;

  before(async () => {
    daemon = await startDaemon();
    sbx = await newSandbox(daemon, await e2bConnection(daemon), 'runsc');
  });
  after(async () => destroyDaemon(daemon));

  test('commands.run streams stdout and stderr of a long command as it runs', async () => {
    const chunks: { text: string; at: number }[] = [];
    const errs: string[] = [];
    const start = Date.now();
    const result = await sbx.commands.run('for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.3; done', {
      onStdout: (text) => {
        chunks.push({ text, at: Date.now() - start });
      },
      onStderr: (text) => {
        errs.push(text);
      },
    });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, 'line1\nline2\nline3\n');
    assert.equal(result.stderr, 'err1\nerr2\nerr3\n');
    assert.equal(chunks.map((c) => c.text).join(''), result.stdout);
    assert.equal(errs.join(''), result.stderr);
    assert.ok(chunks.length >= 2 && chunks[0]!.at < chunks.at(-1)!.at - 300, 'output arrived while the command ran');
  });

  test('a failing command raises CommandExitError with its exit code and output', async () => {
    await assert.rejects(sbx.commands.run('echo out; echo oops >&2; exit 3'), (err: unknown) => {
      assert.ok(err instanceof CommandExitError, String(err));
      assert.equal(err.exitCode, 3);
      assert.equal(err.stdout, 'out\n');
      assert.equal(err.stderr, 'oops\n');
      assert.equal(err.error, 'exit status 3');
      return true;
    });
  });

  test('cwd, user and envs apply; the default user is the image user; timeoutMs ends the command', async () => {
    const r = await sbx.commands.run('pwd; id -un; echo "$A"; echo "$FROM_CREATE"', {
      cwd: '/tmp',
      user: 'root',
      envs: { A: 'from-envs' },
    });
    assert.equal(r.stdout, '/tmp\nroot\nfrom-envs\nyes\n');
    const d = await sbx.commands.run('id -un; pwd');
    assert.equal(d.stdout, 'user\n/home/user\n');
    const started = Date.now();
    await assert.rejects(sbx.commands.run('sleep 30', { timeoutMs: 700 }), TimeoutError);
    assert.ok(Date.now() - started < 5000);
    // The deadline also ended the process: nothing named sleep 30 is left.
    await waitFor(
      async () => !(await sbx.commands.list()).some((p) => p.args.join(' ').includes('sleep 30')),
      'sleep to end',
    );
  });

  test('background commands: list, sendStdin, connect, kill', async () => {
    const out: string[] = [];
    const handle = await sbx.commands.run('cat', { background: true, stdin: true, onStdout: (t) => void out.push(t) });
    const listed = await sbx.commands.list();
    const mine = listed.find((p) => p.pid === handle.pid);
    assert.ok(mine, JSON.stringify(listed));
    assert.equal(mine.cmd, '/bin/bash');
    assert.deepEqual(mine.args, ['-l', '-c', 'cat']);
    await sbx.commands.sendStdin(handle.pid, 'hello\n');
    await waitFor(() => out.join('') === 'hello\n', 'echo of stdin');
    await handle.disconnect();

    const again: string[] = [];
    const attached = await sbx.commands.connect(handle.pid, { onStdout: (t) => void again.push(t) });
    await sbx.commands.sendStdin(handle.pid, 'again\n');
    await waitFor(() => again.join('').includes('again\n'), 'output after connect');
    assert.equal(again.join(''), 'again\n', 'connect sends output from now on, as envd does: no replay');
    assert.equal(await sbx.commands.kill(handle.pid), true);
    await assert.rejects(attached.wait(), (err: unknown) => {
      assert.ok(err instanceof CommandExitError, String(err));
      assert.equal(err.exitCode, -1);
      assert.equal(err.error, 'signal: killed');
      return true;
    });
    assert.equal(await sbx.commands.kill(handle.pid), false);
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === handle.pid));
  });

  test('stdin is closed unless asked for, and closeStdin ends a reader', async () => {
    const r = await sbx.commands.run('cat; echo done');
    assert.equal(r.stdout, 'done\n');
    const handle = await sbx.commands.run('wc -c', { background: true, stdin: true });
    await handle.sendStdin('12345');
    await handle.closeStdin();
    const result = await handle.wait();
    assert.equal(result.stdout.trim(), '5');
  });

  test('pty: create, sendInput, resize, kill', async () => {
    let output = '';
    const decoder = new TextDecoder();
    const pty = await sbx.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        output += decoder.decode(d);
      },
    });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo pty-$((6*7))\n'));
    await waitFor(() => output.includes('pty-42'), 'pty output', 15_000);
    await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('stty size\n'));
    await waitFor(() => output.includes('30 100'), 'resized terminal', 15_000);
    assert.equal(await sbx.pty.kill(pty.pid), true);
    await assert.rejects(pty.wait(), CommandExitError);
  });

  test('files: write and read text, bytes and streams; list, exists, getInfo, makeDir, rename, remove', async () => {
    const info = await sbx.files.write('/home/user/docs/a.txt', 'hello');
    assert.deepEqual(
      { ...info, metadata: undefined },
      { path: '/home/user/docs/a.txt', name: 'a.txt', type: 'file', metadata: undefined },
    );
    assert.equal(await sbx.files.read('/home/user/docs/a.txt'), 'hello');
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    await sbx.files.write('rel/b.bin', bytes.buffer);
    assert.deepEqual(await sbx.files.read('/home/user/rel/b.bin', { format: 'bytes' }), bytes);
    await sbx.files.write('/home/user/empty', '');
    assert.equal(await sbx.files.read('/home/user/empty'), '');
    const many = await sbx.files.write([
      { path: '/home/user/m/1.txt', data: 'one' },
      { path: '/home/user/m/2.txt', data: 'two' },
    ]);
    assert.deepEqual(
      many.map((w) => w.path),
      ['/home/user/m/1.txt', '/home/user/m/2.txt'],
    );
    const owner = await sbx.commands.run('stat -c %U /home/user/docs/a.txt');
    assert.equal(owner.stdout.trim(), 'user');

    const listed = await sbx.files.list('/home/user/m');
    assert.deepEqual(
      listed.map((e) => [e.name, e.type, e.size]),
      [
        ['1.txt', 'file', 3],
        ['2.txt', 'file', 3],
      ],
    );
    const deep = await sbx.files.list('/home/user', { depth: 2 });
    assert.ok(deep.some((e) => e.path === '/home/user/m/2.txt'));
    const stat = await sbx.files.getInfo('/home/user/docs/a.txt');
    assert.equal(stat.size, 5);
    assert.equal(stat.owner, 'user');
    assert.match(stat.permissions, /^-rw/);
    assert.ok(stat.modifiedTime instanceof Date && Math.abs(stat.modifiedTime.getTime() - Date.now()) < 120_000);
    const dirInfo = await sbx.files.getInfo('/home/user/docs');
    assert.equal(dirInfo.type, 'dir');
    assert.match(dirInfo.permissions, /^d/);

    assert.equal(await sbx.files.exists('/home/user/docs/a.txt'), true);
    assert.equal(await sbx.files.exists('/home/user/nope'), false);
    assert.equal(await sbx.files.makeDir('/home/user/newdir/x'), true);
    assert.equal(await sbx.files.makeDir('/home/user/newdir/x'), false);
    const moved = await sbx.files.rename('/home/user/docs/a.txt', '/home/user/newdir/x/c.txt');
    assert.equal(moved.path, '/home/user/newdir/x/c.txt');
    await sbx.files.remove('/home/user/newdir');
    assert.equal(await sbx.files.exists('/home/user/newdir'), false);
    await assert.rejects(sbx.files.read('/home/user/missing.txt'), FileNotFoundError);
    await assert.rejects(sbx.files.getInfo('/home/user/missing.txt'), FileNotFoundError);
  });

  test('files: a 50 MiB file round trip streams both ways', async () => {
    const size = 50 * 1024 * 1024;
    const chunk = new Uint8Array(1024 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
    const hash = createHash('sha256');
    for (let i = 0; i < 50; i++) hash.update(chunk);
    const expected = hash.digest('hex');
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= size) controller.close();
        else {
          controller.enqueue(chunk);
          sent += chunk.length;
        }
      },
    });
    const started = Date.now();
    await sbx.files.write('/home/user/big.bin', body);
    const uploadMs = Date.now() - started;
    const remote = await sbx.commands.run('sha256sum /home/user/big.bin');
    assert.equal(remote.stdout.split(' ')[0], expected);

    const stream = await sbx.files.read('/home/user/big.bin', { format: 'stream' });
    const h = createHash('sha256');
    let got = 0;
    for await (const part of stream as unknown as AsyncIterable<Uint8Array>) {
      h.update(part);
      got += part.length;
    }
    assert.equal(got, size);
    assert.equal(h.digest('hex'), expected);
    console.log(`50 MiB upload ${uploadMs} ms, round trip ${Date.now() - started} ms`);
  });

  test('files.watchDir reports create, write and remove', async () => {
    await sbx.files.makeDir('/home/user/watched');
    const events: { type: FilesystemEventType; name: string }[] = [];
    const handle = await sbx.files.watchDir(
      '/home/user/watched',
      (e) => void events.push({ type: e.type, name: e.name }),
      {
        recursive: true,
      },
    );
    try {
      await sbx.files.write('/home/user/watched/f.txt', 'one');
      await sbx.commands.run('echo more >> /home/user/watched/f.txt; mkdir /home/user/watched/sub');
      await waitFor(() => events.some((e) => e.type === FilesystemEventType.CREATE && e.name === 'sub'), 'sub create');
      await new Promise((r) => setTimeout(r, 100));
      await sbx.files.write('/home/user/watched/sub/g.txt', 'deep');
      await sbx.files.remove('/home/user/watched/f.txt');
      await waitFor(
        () =>
          events.some((e) => e.type === FilesystemEventType.CREATE && e.name === 'f.txt') &&
          events.some((e) => e.type === FilesystemEventType.WRITE && e.name === 'f.txt') &&
          events.some((e) => e.name === 'sub/g.txt') &&
          events.some((e) => e.type === FilesystemEventType.REMOVE && e.name === 'f.txt'),
        `watch events, got ${JSON.stringify(events)}`,
      );
    } finally {
      await handle.stop();
    }
  });

  test('health, envs and the host form 49983-<id>.<domain> reach the same API', async () => {
    const port = new URL(daemon.url).port;
    const get = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const token = envdAccessTokenOf(sbx);
    assert.ok(token, 'Sandbox.create (v2) secures envd with an access token');
    assert.equal((await get('/e2b/health', { 'e2b-sandbox-id': sbx.sandboxId })).status, 204);
    assert.equal((await get('/health', { host: `49983-${sbx.sandboxId}.localhost:${port}` })).status, 204);
    const refused = await get('/envs', { host: `49983-${sbx.sandboxId}.localhost` });
    assert.equal(refused.status, 401, 'envs without X-Access-Token');
    const envs = await get('/envs', { host: `49983-${sbx.sandboxId}.localhost`, 'x-access-token': token });
    assert.equal(envs.status, 200);
    assert.equal((JSON.parse(envs.body) as Record<string, string>).FROM_CREATE, 'yes');
    const missing = await get('/e2b/health', { 'e2b-sandbox-id': 'nosuchsandbox' });
    assert.equal(missing.status, 404);
  });
});

describe('e2b SDK against den envd: watch on runc, concurrency across sandboxes', () => {
  let daemon: TestDaemon;
  const sandboxes: Sandbox[] = [];

  before(async () => {
    daemon = await startDaemon();
    const conn = await e2bConnection(daemon);
    sandboxes.push(
      ...(await Promise.all([
        newSandbox(daemon, conn, 'runc'),
        newSandbox(daemon, conn, 'runsc'),
        newSandbox(daemon, conn, 'runsc'),
      ])),
    );
  });
  after(async () => destroyDaemon(daemon));

  test('watchDir works under runc too', async () => {
    const sbx = sandboxes[0]!;
    const events: string[] = [];
    const handle = await sbx.files.watchDir('/tmp', (e) => void events.push(`${e.type}:${e.name}`));
    try {
      // One step at a time: den classifies each inotify event by a stat, so changes a few microseconds apart
      // (one shell line) are coalesced; steps a moment apart are each reported.
      for (const step of ['touch /tmp/w1', 'chmod 600 /tmp/w1', 'mv /tmp/w1 /tmp/w2', 'rm /tmp/w2']) {
        await sbx.commands.run(`${step} && sleep 0.15`);
      }
      await waitFor(
        () => ['create:w1', 'chmod:w1', 'rename:w1', 'create:w2', 'remove:w2'].every((e) => events.includes(e)),
        `runc watch events, got ${JSON.stringify(events)}`,
      );
    } finally {
      await handle.stop();
    }
  });

  test('20 concurrent commands.run across three sandboxes', async () => {
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sandboxes[i % 3]!.commands.run(`echo run-${i}; sleep 0.2`)),
    );
    for (const [i, r] of results.entries()) assert.equal(r.stdout, `run-${i}\n`);
    console.log(`20 concurrent commands.run: ${Date.now() - started} ms`);
  });
});
