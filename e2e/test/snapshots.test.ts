import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DenClient, Sandbox } from '@den/sdk';
import { COUNTER, count } from '../src/counter.js';
import { DEN_BIN, destroyDaemon, REPO_ROOT, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { httpGet } from '../src/http.js';
import { leftovers, networkLeftovers } from '../src/leaks.js';

const run = promisify(execFile);

/** The S3-compatible test server of the daemon's own object-store tests (s3rver, a real server on 127.0.0.1). */
interface S3TestServer {
  endpoint: string;
  dir: string;
  stop(): Promise<void>;
}
async function startS3Server(): Promise<S3TestServer> {
  const support = join(REPO_ROOT, 'packages/daemon/dist/test/storage/object-store-s3-server.js');
  const { startS3Server: start } = (await import(support)) as { startS3Server: () => Promise<S3TestServer> };
  return start();
}

describe('snapshots and images', () => {
  let daemon: TestDaemon;
  let den: DenClient;
  const images: string[] = [];

  before(async () => {
    daemon = await startDaemon();
    den = new DenClient({ url: daemon.url });
  });
  after(async () => {
    if (daemon) {
      for (const s of await den.listSnapshots().catch(() => [])) await den.deleteSnapshot(s.id).catch(() => {});
      for (const sbx of await Sandbox.list({ url: daemon.url })) await den.deleteSandbox(sbx.id);
      for (const name of images) await den.deleteImage(name).catch(() => {});
      await destroyDaemon(daemon);
    }
  });

  test('runsc: a fork continues the processes, has the files of the moment and its own network', async () => {
    const parent = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    await parent.files.write('/home/user/a.txt', 'at snapshot');
    await parent.commands.run(COUNTER);
    await parent.commands.run('nohup python3 -m http.server 8000 --directory /home/user >/dev/null 2>&1 &');
    await parent.ports.waitFor(8000);
    // Far enough that a counter started afresh in the fork could not be there yet.
    await waitFor(async () => (await count(parent).catch(() => 0)) > 30, 'the counter to run');
    const beforeSnapshot = await count(parent);

    const snap = await parent.snapshots.create({ name: 'fork-me' });
    assert.equal(snap.memory, true, snap.memoryNotSaved ?? '');
    assert.equal(snap.name, 'fork-me');
    assert.ok(snap.sizeBytes > 0);
    assert.equal((await parent.commands.run('echo still here')).stdout, 'still here\n', 'the parent keeps running');
    await parent.files.write('/home/user/a.txt', 'changed later');

    const fork = await Sandbox.create({ url: daemon.url, fromSnapshot: 'fork-me' });
    const info = await fork.info();
    const parentInfo = await parent.info();
    assert.equal(info.runtime, 'runsc');
    assert.notEqual(info.network.address, parentInfo.network.address);
    assert.equal(await fork.files.read('/home/user/a.txt'), 'at snapshot', 'the fork has the files of the moment');
    const first = await count(fork);
    assert.ok(first >= beforeSnapshot, `the counter continues in the fork (${beforeSnapshot} -> ${first})`);
    await waitFor(async () => (await count(fork)) > first, 'the counter to continue in the fork');
    // The HTTP server started in the parent answers in the fork, at the fork's own address.
    const page = await httpGet(daemon.url, '/a.txt', {
      host: fork.getHost(8000),
      'x-den-preview-token': fork.previewToken,
    });
    assert.equal(page.status, 200, page.body);
    assert.equal(page.body, 'at snapshot');
    assert.equal(await parent.files.read('/home/user/a.txt'), 'changed later', 'the parent is untouched');
    assert.deepEqual(
      (await parent.snapshots.list()).map((s) => s.id),
      [snap.id],
    );
    await fork.kill();
    await parent.kill();
  });

  test('runc: files only, taken while it runs (frozen), with the reason', async () => {
    const parent = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256 });
    await parent.files.write('/home/user/b.txt', 'runc files');
    await parent.commands.run('rm /home/user/.bashrc');
    const snap = await den.createSnapshot(parent.id, { name: 'runc-snap' });
    assert.equal(snap.memory, false);
    assert.match(snap.memoryNotSaved ?? '', /runc cannot save memory/);
    assert.equal((await parent.commands.run('echo running')).stdout, 'running\n');
    const fork = await Sandbox.create({ url: daemon.url, fromSnapshot: snap.id, name: 'runc-fork', memoryMB: 300 });
    const info = await fork.info();
    assert.deepEqual([info.runtime, info.memoryMB, info.name], ['runc', 300, 'runc-fork']);
    assert.equal(await fork.files.read('/home/user/b.txt'), 'runc files');
    const gone = await fork.commands.run('test -e /home/user/.bashrc; echo $?');
    assert.equal(gone.stdout, '1\n', 'a file deleted in the parent stays deleted in the fork');
    await fork.kill();
    await parent.kill();
  });

  test('stopped and paused sandboxes: snapshots leave them as they were', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512 });
    await sbx.files.write('/home/user/c.txt', 'stopped');
    await den.stopSandbox(sbx.id);
    const stoppedSnap = await sbx.snapshots.create();
    assert.equal(stoppedSnap.memory, false);
    assert.equal((await sbx.info()).state, 'stopped');
    assert.deepEqual(leftovers(daemon.home), [], 'no mount is left after a snapshot of a stopped sandbox');

    await den.startSandbox(sbx.id);
    await sbx.commands.run(COUNTER);
    await waitFor(async () => (await count(sbx).catch(() => 0)) > 3, 'the counter to run');
    await sbx.pause();
    const pausedSnap = await sbx.snapshots.create();
    assert.equal(pausedSnap.memory, true);
    assert.equal((await sbx.info()).state, 'paused');
    assert.deepEqual(networkLeftovers(daemon.bridge), []);
    const fork = await Sandbox.create({ url: daemon.url, fromSnapshot: pausedSnap.id });
    await waitFor(async () => (await count(fork).catch(() => 0)) > 0, 'the counter in the fork');
    assert.equal(await fork.files.read('/home/user/c.txt'), 'stopped');
    await fork.kill();
    await sbx.kill();
  });

  test('bad input: unknown snapshot, taken name, other runtime or image, busy names', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256 });
    const taken = await den.createSnapshot(sbx.id, { name: 'taken' });
    await assert.rejects(den.createSnapshot(sbx.id, { name: 'taken' }), { code: 'NAME_TAKEN' });
    await assert.rejects(den.createSnapshot(sbx.id, { name: 'a'.repeat(20) }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(den.createSnapshot('no-such-sandbox'), { code: 'SANDBOX_NOT_FOUND' });
    await assert.rejects(Sandbox.create({ url: daemon.url, fromSnapshot: 'nope' }), { code: 'SNAPSHOT_NOT_FOUND' });
    await assert.rejects(Sandbox.create({ url: daemon.url, fromSnapshot: 'taken', runtime: 'runsc' }), {
      code: 'INVALID_ARGUMENT',
      message: /taken on runc/,
    });
    await assert.rejects(Sandbox.create({ url: daemon.url, fromSnapshot: 'taken', diskMB: 100 }), {
      code: 'INVALID_ARGUMENT',
      message: /diskMB must be at least/,
    });
    await assert.rejects(den.getSnapshot('nope'), { code: 'SNAPSHOT_NOT_FOUND' });
    await den.deleteSnapshot('taken');
    await assert.rejects(den.deleteSnapshot('taken'), { code: 'SNAPSHOT_NOT_FOUND' });
    const stored = await readdir(join(daemon.home, 'objects'), { recursive: true });
    assert.deepEqual(
      stored.filter((f) => f.includes(taken.id) && f.includes('.')),
      [],
      'deleting a snapshot deletes every object',
    );
    await sbx.kill();
  });

  test('image create --from-instance: a new image with the files, deleted files stay deleted', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256 });
    await sbx.files.write('/home/user/tool.sh', 'echo from-image');
    await sbx.commands.run('rm /etc/motd', { user: 'root' });
    const image = await den.createImage({ name: 'e2e-committed', fromSandbox: sbx.id });
    images.push(image.name);
    assert.equal(image.layers.length, 2);
    assert.equal(image.user, 'user');
    assert.ok((await den.images()).some((i) => i.name === 'e2e-committed'));
    await assert.rejects(den.createImage({ name: 'e2e-committed', fromSandbox: sbx.id }), { code: 'IMAGE_EXISTS' });

    const child = await Sandbox.create({ url: daemon.url, image: 'e2e-committed', runtime: 'runsc', memoryMB: 512 });
    assert.equal((await child.commands.run('sh /home/user/tool.sh')).stdout, 'from-image\n');
    assert.equal((await child.commands.run('test -e /etc/motd; echo $?')).stdout, '1\n');
    await assert.rejects(den.deleteImage('e2e-committed'), { code: 'IMAGE_IN_USE' });
    await child.kill();
    await den.deleteImage('e2e-committed');
    images.pop();
    await assert.rejects(den.deleteImage('base'), { code: 'INVALID_ARGUMENT' });
    await sbx.kill();
  });

  test('CLI: snapshot create/ls/rm, create --from-snapshot, image create --from-instance', async () => {
    const env = { ...process.env, DEN_URL: daemon.url };
    const den$ = async (...args: string[]) => (await run(DEN_BIN, args, { env })).stdout;
    const id = (await den$('create', '--runtime', 'runc', '--name', 'cli-src')).trim();
    await den$('exec', id, '--', 'sh', '-c', 'echo cli > /home/user/cli.txt');
    const snapId = (await den$('snapshot', 'create', 'cli-src', '--name', 'cli-snap')).trim();
    assert.match(snapId, /^[a-z0-9]{20}$/);
    assert.match(await den$('snapshot', 'ls'), /cli-snap\s+cli-src\s+base\s+runc\s+no/);
    const forkId = (await den$('create', '--from-snapshot', 'cli-snap', '--name', 'cli-fork')).trim();
    assert.equal(await den$('exec', forkId, '--', 'cat', '/home/user/cli.txt'), 'cli\n');
    assert.equal((await den$('image', 'create', 'cli-image', '--from-instance', 'cli-src')).trim(), 'cli-image');
    images.push('cli-image');
    assert.match(await den$('images'), /cli-image/);
    assert.equal((await den$('snapshot', 'rm', 'cli-snap')).trim(), 'cli-snap');
    await den$('rm', '--force', 'cli-fork', 'cli-src');
    assert.equal((await den$('image', 'rm', 'cli-image')).trim(), 'cli-image');
    images.pop();
  });
});

describe('snapshots through S3, restored by another daemon', () => {
  let s3: S3TestServer;
  let a: TestDaemon;
  let b: TestDaemon;

  before(async () => {
    s3 = await startS3Server();
    const env = {
      DEN_S3_BUCKET: 'den-snapshots',
      DEN_S3_ENDPOINT: s3.endpoint,
      DEN_S3_REGION: 'us-east-1',
      DEN_S3_ACCESS_KEY_ID: 'S3RVER',
      DEN_S3_SECRET_ACCESS_KEY: 'S3RVER',
      DEN_S3_FORCE_PATH_STYLE: 'true',
    };
    a = await startDaemon({ env });
    b = await startDaemon({ env });
  });
  after(async () => {
    if (a) await destroyDaemon(a);
    if (b) await destroyDaemon(b);
    await s3?.stop();
  });

  test('a snapshot taken on one daemon starts on another that never ran the sandbox', async () => {
    const src = await Sandbox.create({ url: a.url, runtime: 'runsc', memoryMB: 512 });
    await src.files.write('/home/user/travel.txt', 'crossed machines');
    await src.commands.run(COUNTER);
    await waitFor(async () => (await count(src).catch(() => 0)) > 3, 'the counter to run');
    const snap = await src.snapshots.create({ name: 'travels' });
    assert.equal(snap.memory, true);
    await src.kill();

    const onB = new DenClient({ url: b.url });
    assert.deepEqual(
      (await onB.listSnapshots()).map((s) => s.name),
      ['travels'],
    );
    const there = await Sandbox.create({ url: b.url, fromSnapshot: 'travels' });
    assert.equal(await there.files.read('/home/user/travel.txt'), 'crossed machines');
    const first = await count(there);
    await waitFor(async () => (await count(there)) > first, 'the counter to continue on the other daemon');
    await there.kill();
    await onB.deleteSnapshot('travels');
    assert.deepEqual(await onB.listSnapshots(), []);
  });

  test('a corrupted snapshot is refused with a clear error and leaves nothing behind', async () => {
    const src = await Sandbox.create({ url: a.url, runtime: 'runc', memoryMB: 256 });
    await src.files.write('/home/user/x.txt', Buffer.alloc(256 * 1024, 7));
    const snap = await src.snapshots.create({ name: 'damaged' });
    // Flip bytes in the middle of the stored upper archive, in the S3 server's own files.
    const files = (await readdir(s3.dir, { recursive: true })).filter(
      (f) => f.includes(snap.id) && f.includes('upper.tar.zst') && f.endsWith('._S3rver_object'),
    );
    assert.equal(files.length, 1, `stored part not found among ${files.join(', ')}`);
    const path = join(s3.dir, files[0]!);
    const bytes = await readFile(path);
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff;
    await writeFile(path, bytes);

    const before = await Sandbox.list({ url: b.url });
    await assert.rejects(Sandbox.create({ url: b.url, fromSnapshot: 'damaged' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SNAPSHOT_CORRUPT');
      assert.match(err.message, /is corrupt: part .*upper\.tar\.zst .*SHA-256.*nothing was restored/);
      return true;
    });
    assert.deepEqual(await Sandbox.list({ url: b.url }), before);
    assert.deepEqual(leftovers(b.home), []);
    assert.deepEqual(networkLeftovers(b.bridge), []);
    assert.equal(await src.files.read('/home/user/x.txt').then((t) => t.length), 256 * 1024, 'the source is intact');
    await src.kill();
    await new DenClient({ url: a.url }).deleteSnapshot('damaged');
  });
});

describe('a daemon killed while it restores a fork', () => {
  test('after the restart the fork runs with the snapshot files or is gone, never on the bare image', async () => {
    let d = await startDaemon();
    try {
      const src = await Sandbox.create({ url: d.url, runtime: 'runsc', memoryMB: 512 });
      await src.files.write('/home/user/f.txt', 'from snapshot');
      await src.snapshots.create({ name: 'crashy' });
      await src.kill();
      for (const delayMs of [40, 150, 400]) {
        const started = fetch(`${d.url}/v1/sandboxes`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ fromSnapshot: 'crashy' }),
        }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, delayMs));
        await d.kill9();
        await started;
        d = await d.restart();
        // The restarted daemon reconciles before it listens: what is left is final.
        for (const info of await Sandbox.list({ url: d.url })) {
          const fork = await Sandbox.connect(info.id, { url: d.url });
          assert.equal(await fork.files.read('/home/user/f.txt'), 'from snapshot', `killed after ${delayMs} ms`);
          await fork.kill();
        }
        assert.deepEqual(leftovers(d.home), [], `killed after ${delayMs} ms`);
        assert.deepEqual(networkLeftovers(d.bridge), [], `killed after ${delayMs} ms`);
      }
      await new DenClient({ url: d.url }).deleteSnapshot('crashy');
    } finally {
      await destroyDaemon(d);
    }
  });
});
