import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from '@den/sdk';
import { COUNTER, count } from '../src/counter.js';
import { type FakeInternet, startFakeInternet } from '../src/fake-internet.js';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { httpGet } from '../src/http.js';
import { leftovers, networkLeftovers } from '../src/leaks.js';

describe('pause and resume', () => {
  let daemon: TestDaemon;
  let world: FakeInternet;

  before(async () => {
    world = await startFakeInternet();
    daemon = await startDaemon({ env: { DEN_DNS_UPSTREAMS: world.dnsUpstream } });
  });
  after(async () => {
    if (daemon) await destroyDaemon(daemon);
    await world?.close();
  });

  test('runsc: memory survives; processes continue; files survive; nothing runs while paused', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await sbx.commands.run(COUNTER);
    await waitFor(async () => (await count(sbx).catch(() => 0)) > 3, 'the counter to run');
    const paused = await sbx.pause();
    assert.equal(paused.state, 'paused');
    assert.deepEqual({ memory: paused.pause?.memory, reason: paused.pause?.reason }, { memory: true, reason: null });
    // Paused: no container, no mount, no namespace (removed right after the pause answered).
    await waitFor(
      () => networkLeftovers(daemon.bridge).length === 0 && leftovers(daemon.home).length === 0,
      'the paused sandbox to be cleared from the machine',
    );
    assert.deepEqual(networkLeftovers(daemon.bridge), []);
    const resumed = await sbx.resume();
    assert.equal(resumed.state, 'running');
    const first = await count(sbx);
    await new Promise((r) => setTimeout(r, 600));
    const later = await count(sbx);
    assert.ok(later > first, `the counter continues after resume (${first} -> ${later})`);
    assert.equal(await sbx.files.read('/home/user/kept.txt'), 'kept');
    // The python process is the same one (pid kept): memory state, not a restart.
    const ps = await sbx.commands.run('pgrep -f "import [t]ime" | head -1');
    assert.match(ps.stdout, /^\d+\n$/);
    await sbx.kill();
  });

  test('runsc: a background command with its output attached keeps its memory, and its output streams on after resume', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    let out = '';
    const handle = await sbx.commands.run('i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done', {
      background: true,
      onStdout: (s) => {
        out += s;
      },
    });
    const lines = () => out.split('\n').filter(Boolean).map(Number);
    await waitFor(() => lines().length >= 3, 'the command to print');
    const paused = await sbx.pause();
    assert.deepEqual({ memory: paused.pause?.memory, reason: paused.pause?.reason }, { memory: true, reason: null });
    const atPause = lines().length;
    await sbx.resume();
    await waitFor(() => lines().length >= atPause + 3, 'output after the resume');
    // The same shell continued counting (memory kept), and no line was lost or repeated across the pause.
    assert.deepEqual(
      lines(),
      lines().map((_, i) => i + 1),
    );
    await handle.kill();
    assert.equal((await handle.wait()).signal, 'SIGKILL');
    await sbx.kill();
  });

  test('a call to a paused sandbox wakes it: exec, files, and a preview request', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    await sbx.commands.run('nohup python3 -m http.server 8000 --directory /tmp >/dev/null 2>&1 &');
    await sbx.files.write('/tmp/page.html', 'woken');
    await sbx.ports.waitFor(8000);
    await sbx.pause();
    // exec
    assert.equal((await sbx.commands.run('echo awake')).stdout, 'awake\n');
    await sbx.pause();
    // a preview request, two at once: both are held until the one resume finishes
    const host = sbx.getHost(8000);
    const get = () => httpGet(daemon.url, '/page.html', { host, 'x-den-preview-token': sbx.previewToken });
    const [a, b] = await Promise.all([get(), get()]);
    assert.equal(a.status, 200, a.body);
    assert.equal(a.body, 'woken');
    assert.equal(b.body, 'woken');
    await sbx.pause();
    // files
    assert.equal(await sbx.files.read('/tmp/page.html'), 'woken');
    await sbx.kill();
  });

  test('a pause closes connections to the outside and says which; the process keeps its memory and sees the reset', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    // The process connects, then blocks reading; what the read ends with is written to a file.
    const script = [
      'import socket, sys',
      `s = socket.create_connection(('${world.web}', 80))`,
      "print('connected', flush=True)",
      'try:',
      "    print('read', s.recv(1), flush=True)",
      'except OSError as e:',
      "    print('error', e.errno, flush=True)",
    ].join('\n');
    await sbx.files.write('/tmp/hold.py', script);
    await sbx.commands.run('nohup python3 /tmp/hold.py >/tmp/hold.log 2>&1 &');
    await waitFor(
      async () => (await sbx.files.read('/tmp/hold.log').catch(() => '')).includes('connected'),
      'the connection',
    );
    const paused = await sbx.pause();
    assert.equal(paused.pause?.memory, true, paused.pause?.reason ?? '');
    assert.match(
      paused.pause?.reason ?? '',
      new RegExp(`1 open TCP connection was closed \\(.* -> ${world.web}:80\\)`),
    );
    await sbx.resume();
    // The same process (memory kept) finds its connection reset; a restarted one would print 'connected' again.
    await waitFor(async () => /\n(error|read) /.test(await sbx.files.read('/tmp/hold.log')), 'the read to end');
    const log = await sbx.files.read('/tmp/hold.log');
    assert.match(log, /^connected\n(error \d+|read b'')\n$/);
    // The next pause has nothing to close.
    const again = await sbx.pause();
    assert.deepEqual({ memory: again.pause?.memory, reason: again.pause?.reason }, { memory: true, reason: null });
    await sbx.kill();
  });

  test('runsc: pausing right after preview requests keeps memory every time (the closed proxy connection does not block it)', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    // A keep-alive server: the preview proxy holds its upstream connection open between requests.
    await sbx.files.write(
      '/tmp/server.js',
      "require('http').createServer((q, r) => r.end('up ' + process.pid)).listen(8000, '0.0.0.0')",
    );
    await sbx.commands.run('nohup node /tmp/server.js >/dev/null 2>&1 &');
    await sbx.ports.waitFor(8000);
    const host = sbx.getHost(8000);
    let pid = '';
    for (let round = 0; round < 15; round++) {
      const page = await httpGet(daemon.url, '/', { host, 'x-den-preview-token': sbx.previewToken });
      assert.equal(page.status, 200, page.body);
      pid ||= page.body;
      assert.equal(page.body, pid, 'the same server process answers after every resume');
      const paused = await sbx.pause();
      assert.deepEqual(
        { round, memory: paused.pause?.memory, reason: paused.pause?.reason },
        { round, memory: true, reason: null },
      );
    }
    await sbx.kill();
  });

  test('a checkpoint gVisor refuses (an open file that was deleted, as tempfile.TemporaryFile keeps) falls back to a filesystem pause and says why', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await sbx.commands.run(
      'nohup python3 -c "import tempfile, time; f = tempfile.TemporaryFile(dir=\'/home/user\'); print(1, flush=True); time.sleep(3600)" >/tmp/held.log 2>&1 &',
    );
    // Waiting for the process alone raced its creating the file (CI once paused first, and memory was kept).
    await waitFor(
      async () => (await sbx.files.read('/tmp/held.log').catch(() => '')) === '1\n',
      'the deleted file to be held',
    );
    const paused = await sbx.pause();
    assert.equal(paused.state, 'paused');
    assert.equal(paused.pause?.memory, false);
    // gVisor 2024 names the deleted file ("deleted and invalidated dentries can't be restore"), or, now and then in
    // the same save, panics on a nil pointer (seen once in CI): either way the pause falls back and gives the reason.
    assert.match(paused.pause?.reason ?? '', /^the memory checkpoint failed \(.+\); only the filesystem is kept$/);
    await sbx.resume();
    assert.equal(await sbx.files.read('/home/user/kept.txt'), 'kept');
    assert.equal(
      (await sbx.commands.run('pgrep -f "tempfile[.]TemporaryFile" || echo none')).stdout,
      'none\n',
      'a new boot',
    );
    await sbx.kill();
  });

  test('a memory image that cannot be restored (damaged on disk) starts the sandbox fresh, with its files and network', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await sbx.commands.run(COUNTER);
    const paused = await sbx.pause();
    assert.equal(paused.pause?.memory, true);
    // Damaged while paused: the kernel state runsc reads first is overwritten with garbage of the same size.
    const image = join(daemon.home, 'sandboxes', sbx.id, 'checkpoint', 'checkpoint.img');
    writeFileSync(image, randomBytes(statSync(image).size));
    const resumed = await sbx.resume();
    assert.equal(resumed.state, 'running');
    assert.equal(await sbx.files.read('/home/user/kept.txt'), 'kept');
    assert.equal((await sbx.commands.run('pgrep -f "import [t]ime" || echo none')).stdout, 'none\n', 'a fresh boot');
    // The network works as after any start: the sandbox reaches the fake internet.
    const out = await sbx.commands.run(`curl -s -m 4 -o /dev/null -w '%{http_code}' http://${world.web}/`);
    assert.equal(out.stdout, '200');
    await sbx.kill();
  });

  test('runc pauses the filesystem only, and says why', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256 });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    const paused = await sbx.pause();
    assert.equal(paused.pause?.memory, false);
    assert.match(paused.pause?.reason ?? '', /runc cannot save memory/);
    assert.equal((await sbx.commands.run('cat /home/user/kept.txt')).stdout, 'kept');
    await sbx.kill();
  });

  test('paused sandboxes stay paused across a daemon restart and resume afterwards', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512, name: 'sleeper' });
    await sbx.commands.run(COUNTER);
    await waitFor(async () => (await count(sbx).catch(() => 0)) > 3, 'the counter to run');
    await sbx.pause();
    daemon = await daemon.restart();
    const again = await Sandbox.connect('sleeper', { url: daemon.url });
    assert.equal((await again.info()).state, 'paused');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await again.info()).state, 'paused', 'reconcile leaves it paused');
    const before = await count(again);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await count(again)) > before, 'the counter continues');
    await again.kill();
  });

  test('a daemon killed right after a pause answered clears the paused sandbox when it restarts', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512, name: 'crashy' });
    await sbx.commands.run(COUNTER);
    await waitFor(async () => (await count(sbx).catch(() => 0)) > 3, 'the counter to run');
    await sbx.pause();
    // The container, mounts and network go after the answer: a SIGKILL now usually lands before they are gone.
    await daemon.kill9();
    daemon = await daemon.restart();
    await waitFor(
      () => networkLeftovers(daemon.bridge).length === 0 && leftovers(daemon.home).length === 0,
      'reconcile to clear the paused sandbox',
    );
    const again = await Sandbox.connect('crashy', { url: daemon.url });
    assert.equal((await again.info()).state, 'paused');
    const before = await count(again);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await count(again)) > before, 'the counter continues');
    await again.kill();
  });

  test('pausing a sandbox that is not running is a clear 409', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256 });
    await sbx.stop();
    await assert.rejects(sbx.pause(), /only a running sandbox can be paused/);
    await sbx.kill();
  });
});
