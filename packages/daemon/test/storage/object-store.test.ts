/**
 * The ObjectStore conformance suite against both adapters: a local directory, and S3 on a real S3-compatible server
 * (s3rver, started on 127.0.0.1 with a free port and stopped after).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { LocalObjectStore, S3ObjectStore } from '../../src/storage/object-store/index.js';
import { type S3TestServer, startS3Server } from './object-store-s3-server.js';
import { objectStoreSuite } from './object-store-suite.js';

let localDir: string;
objectStoreSuite('local directory', {
  async open() {
    localDir = await mkdtemp(join(tmpdir(), 'den-objects-'));
    return LocalObjectStore.open(localDir);
  },
  partialUploads: () => readdir(join(localDir, 'partial')),
  async teardown() {
    await rm(localDir, { recursive: true, force: true });
  },
});

let server: S3TestServer;
objectStoreSuite('S3 (s3rver)', {
  async open() {
    server = await startS3Server();
    return new S3ObjectStore(server.options());
  },
  async teardown() {
    await server?.stop();
  },
});

describe('S3ObjectStore under a key prefix', () => {
  let prefixServer: S3TestServer;
  let whole: S3ObjectStore;
  let tenant: S3ObjectStore;

  before(async () => {
    prefixServer = await startS3Server();
    whole = new S3ObjectStore(prefixServer.options('den-test'));
    tenant = new S3ObjectStore(prefixServer.options('den-test', 'tenants/one'));
  });

  after(async () => {
    await whole?.close();
    await tenant?.close();
    await prefixServer?.stop();
  });

  it('stores keys under the prefix and sees only its own', async () => {
    assert.match(tenant.location, /^s3:\/\/den-test\/tenants\/one\/ at http:\/\/127\.0\.0\.1:\d+$/);
    await tenant.put('snap/a', Readable.from([Buffer.from('tenant object')]));
    await whole.put('snap/a', Readable.from([Buffer.from('bucket root object')]));
    assert.deepEqual(
      (await whole.list('')).map((o) => o.key),
      ['snap/a', 'tenants/one/snap/a'],
    );
    assert.deepEqual(
      (await tenant.list('')).map((o) => o.key),
      ['snap/a'],
    );
    assert.equal(await readText(await tenant.get('snap/a')), 'tenant object');
    assert.equal(await tenant.deletePrefix('snap/'), 1);
    assert.deepEqual(
      (await whole.list('')).map((o) => o.key),
      ['snap/a'],
    );
  });
});

describe('LocalObjectStore on disk', () => {
  it('keeps objects as plain files under data/ and removes folders a delete leaves empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'den-objects-'));
    try {
      const store = await LocalObjectStore.open(dir);
      await store.put('a/b/c.txt', Readable.from([Buffer.from('c')]));
      assert.equal(await readFile(join(dir, 'data', 'a', 'b', 'c.txt'), 'utf8'), 'c');
      await store.delete('a/b/c.txt');
      assert.deepEqual(await readdir(join(dir, 'data')), []);
      assert.equal(store.location, `file://${dir}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function readText(stream: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString();
  return text;
}
