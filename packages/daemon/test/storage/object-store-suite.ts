/**
 * The conformance suite every ObjectStore adapter passes (containerd's SnapshotterSuite idea): the same tests run
 * against the local directory store and the S3 store on a real S3-compatible server (object-store.test.ts).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { DenError } from '@den/shared';
import type { ObjectStore } from '../../src/services/ports.js';

export interface ObjectStoreSubject {
  open(): Promise<ObjectStore>;
  /** the backend's leftovers of unfinished uploads that must not remain (local: files in partial/) */
  partialUploads?(): Promise<string[]>;
  /** stops whatever open() started; the store is closed before */
  teardown(): Promise<void>;
}

const MiB = 1024 * 1024;

export function objectStoreSuite(name: string, subject: ObjectStoreSubject): void {
  describe(`ObjectStore conformance: ${name}`, { concurrency: false }, () => {
    let store: ObjectStore;

    before(async () => {
      store = await subject.open();
    });

    after(async () => {
      await store?.close();
      await subject.teardown();
    });

    it('round-trips an empty object', async () => {
      const put = await store.put('rt/empty', Readable.from([]));
      assert.deepEqual(put, { size: 0, sha256: sha256Of(Buffer.alloc(0)) });
      assert.equal((await readAll(await store.get('rt/empty'))).length, 0);
      const head = await store.head('rt/empty');
      assert.equal(head?.size, 0);
    });

    it('round-trips a small object with its sha256, size and modification time', async () => {
      const body = Buffer.from('hello, den object store\n');
      const startedMs = Date.now();
      const put = await store.put('rt/small.txt', Readable.from([body]), { contentLength: body.length });
      assert.deepEqual(put, { size: body.length, sha256: sha256Of(body) });
      assert.deepEqual(await readAll(await store.get('rt/small.txt')), body);
      const head = await store.head('rt/small.txt');
      assert.equal(head?.key, 'rt/small.txt');
      assert.equal(head?.size, body.length);
      // S3 keeps whole seconds
      assert.ok(head!.lastModified.getTime() >= Math.floor(startedMs / 1000) * 1000 - 1000, 'lastModified is recent');
    });

    it('replaces an object on put', async () => {
      await store.put('rt/replace', Readable.from([Buffer.from('first version')]));
      await store.put('rt/replace', Readable.from([Buffer.from('second')]));
      assert.equal((await readAll(await store.get('rt/replace'))).toString(), 'second');
    });

    it('streams 200 MiB through put and get with bounded memory and a matching sha256', async (t) => {
      const totalBytes = 200 * MiB;
      const source = patternSource(totalBytes);
      const rssBefore = process.memoryUsage().rss;
      let rssPeak = rssBefore;
      const sampler = setInterval(() => {
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }, 10);
      try {
        const putStartMs = Date.now();
        const put = await store.put('big/200mib', source.stream(), { contentLength: totalBytes });
        const putMs = Date.now() - putStartMs;
        assert.deepEqual(put, { size: totalBytes, sha256: source.sha256 });
        const getStartMs = Date.now();
        const back = await hashStream(await store.get('big/200mib'));
        const getMs = Date.now() - getStartMs;
        assert.deepEqual(back, { size: totalBytes, sha256: source.sha256 });
        const growthMiB = (rssPeak - rssBefore) / MiB;
        t.diagnostic(`200 MiB: put ${putMs} ms, get ${getMs} ms, RSS growth ${growthMiB.toFixed(1)} MiB`);
        // Buffering the object would grow RSS by 200 MiB or more; streaming keeps a few parts (8 MiB each) in flight.
        assert.ok(growthMiB < 100, `RSS grew by ${growthMiB.toFixed(1)} MiB while streaming 200 MiB`);
      } finally {
        clearInterval(sampler);
        await store.delete('big/200mib');
      }
    });

    it('lists by plain string prefix, sorted, with sizes', async () => {
      const keys = ['ls/a/1', 'ls/a/2', 'ls/ab/1', 'ls/b', 'ls-other/x'];
      for (const key of keys) await store.put(key, Readable.from([Buffer.from(key)]));
      assert.deepEqual(
        (await store.list('ls/a/')).map((o) => o.key),
        ['ls/a/1', 'ls/a/2'],
      );
      assert.deepEqual(
        (await store.list('ls/a')).map((o) => o.key),
        ['ls/a/1', 'ls/a/2', 'ls/ab/1'],
      );
      assert.deepEqual(
        (await store.list('ls')).map((o) => o.key),
        ['ls-other/x', 'ls/a/1', 'ls/a/2', 'ls/ab/1', 'ls/b'],
      );
      assert.deepEqual(
        (await store.list('ls/b')).map((o) => [o.key, o.size]),
        [['ls/b', 4]],
      );
      assert.deepEqual(await store.list('ls/nothing/'), []);
      assert.deepEqual(await store.list('nowhere'), []);
      const all = (await store.list('')).map((o) => o.key);
      for (const key of keys) assert.ok(all.includes(key), `list('') misses ${key}`);
      assert.equal(await store.deletePrefix('ls'), keys.length);
      assert.deepEqual(await store.list('ls'), []);
    });

    it('lists and deletes more keys than one listing page (1,000) holds', async (t) => {
      const count = 1100;
      const keys = Array.from({ length: count }, (_, i) => `many/k${String(i).padStart(5, '0')}`);
      const startMs = Date.now();
      await inBatches(keys, 32, (key) => store.put(key, Readable.from([Buffer.from(key)])));
      const putMs = Date.now() - startMs;
      const listed = await store.list('many/');
      assert.equal(listed.length, count);
      assert.deepEqual(
        listed.map((o) => o.key),
        keys,
      );
      const deleteStartMs = Date.now();
      assert.equal(await store.deletePrefix('many/'), count);
      t.diagnostic(`${count} keys: put ${putMs} ms, deletePrefix ${Date.now() - deleteStartMs} ms`);
      assert.deepEqual(await store.list('many/'), []);
    });

    it('deletes idempotently', async () => {
      await store.put('del/once', Readable.from([Buffer.from('x')]));
      await store.delete('del/once');
      await store.delete('del/once');
      await store.delete('del/never-existed');
      assert.equal(await store.head('del/once'), undefined);
      assert.equal(await store.deletePrefix('del/'), 0);
    });

    it('answers a missing key with OBJECT_NOT_FOUND on get and undefined on head', async () => {
      await assert.rejects(store.get('missing/key'), (err: unknown) => {
        assert.ok(err instanceof DenError);
        assert.equal(err.code, 'OBJECT_NOT_FOUND');
        assert.match(err.message, /missing\/key/);
        return true;
      });
      assert.equal(await store.head('missing/key'), undefined);
      // a "folder" of other keys is no object either
      await store.put('missing/dir/child', Readable.from([Buffer.from('c')]));
      await assert.rejects(store.get('missing/dir'), { code: 'OBJECT_NOT_FOUND' });
      assert.equal(await store.head('missing/dir'), undefined);
      await store.delete('missing/dir/child');
    });

    it('puts different keys concurrently', async () => {
      const bodies = Array.from({ length: 12 }, (_, i) => randomBytes((i + 1) * 300 * 1024));
      const results = await Promise.all(
        bodies.map((body, i) => store.put(`conc/${i}/obj`, Readable.from(chunks(body, 64 * 1024)))),
      );
      for (const [i, body] of bodies.entries()) {
        assert.deepEqual(results[i], { size: body.length, sha256: sha256Of(body) });
        assert.deepEqual(await readAll(await store.get(`conc/${i}/obj`)), body);
      }
      assert.equal(await store.deletePrefix('conc/'), bodies.length);
    });

    it('refuses bad keys and prefixes with INVALID_ARGUMENT', async () => {
      const bad = [
        '',
        '/abs',
        'trailing/',
        'a//b',
        '..',
        '../up',
        'a/../b',
        './a',
        'a/./b',
        'a\\b',
        'nul\u0000',
        'x'.repeat(1025),
      ];
      for (const key of bad) {
        const refused = { code: 'INVALID_ARGUMENT' };
        await assert.rejects(store.put(key, Readable.from([Buffer.from('x')])), refused, `put ${JSON.stringify(key)}`);
        await assert.rejects(store.get(key), refused, `get ${JSON.stringify(key)}`);
        await assert.rejects(store.head(key), refused, `head ${JSON.stringify(key)}`);
        await assert.rejects(store.delete(key), refused, `delete ${JSON.stringify(key)}`);
      }
      await assert.rejects(store.list('../'), { code: 'INVALID_ARGUMENT' });
      await assert.rejects(store.list('/abs'), { code: 'INVALID_ARGUMENT' });
      // deletePrefix('') would empty the whole store
      await assert.rejects(store.deletePrefix(''), { code: 'INVALID_ARGUMENT' });
    });

    it('refuses a body whose length differs from contentLength, storing nothing', async () => {
      await assert.rejects(store.put('len/short', Readable.from([Buffer.from('12345')]), { contentLength: 10 }), {
        code: 'INVALID_ARGUMENT',
      });
      await assert.rejects(store.put('len/long', Readable.from([Buffer.from('12345')]), { contentLength: 3 }), {
        code: 'INVALID_ARGUMENT',
      });
      assert.deepEqual(await store.list('len/'), []);
    });

    for (const [label, bytesBeforeFailure] of [
      ['within the first part', 100 * 1024],
      ['after several parts', 40 * MiB],
    ] as const) {
      it(`makes no object visible when the body fails ${label}, and keeps the previous one`, async () => {
        const key = `interrupted/${bytesBeforeFailure}`;
        const previous = Buffer.from('the complete previous version');
        await store.put(key, Readable.from([previous]));
        const boom = new Error('source stream failed midway');
        await assert.rejects(store.put(key, failingSource(bytesBeforeFailure, boom)), (err) => err === boom);
        assert.deepEqual(await readAll(await store.get(key)), previous);
        assert.equal((await store.head(key))?.size, previous.length);
        await store.delete(key);
        await assert.rejects(store.put(`${key}-new`, failingSource(bytesBeforeFailure, boom)), (err) => err === boom);
        assert.equal(await store.head(`${key}-new`), undefined);
        assert.deepEqual(await store.list('interrupted/'), []);
        if (subject.partialUploads) assert.deepEqual(await subject.partialUploads(), []);
      });
    }
  });
}

function sha256Of(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function hashStream(stream: Readable): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

function* chunks(data: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

/**
 * `totalBytes` of incompressible data made on the fly (a random MiB, stamped with its index), so the test itself
 * holds one MiB, and its sha256 computed the same way in advance.
 */
function patternSource(totalBytes: number): { sha256: string; stream(): Readable } {
  const block = randomBytes(MiB);
  function* generate(): Generator<Buffer> {
    for (let at = 0, index = 0; at < totalBytes; at += MiB, index++) {
      const chunk = Buffer.from(block.subarray(0, Math.min(MiB, totalBytes - at)));
      chunk.writeUInt32BE(index, 0);
      yield chunk;
    }
  }
  const hash = createHash('sha256');
  for (const chunk of generate()) hash.update(chunk);
  return { sha256: hash.digest('hex'), stream: () => Readable.from(generate()) };
}

/** A body that delivers `bytes` bytes and then fails with `error`. */
function failingSource(bytes: number, error: Error): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for (let left = bytes; left > 0; left -= 64 * 1024) yield randomBytes(Math.min(64 * 1024, left));
    throw error;
  }
  return Readable.from(generate());
}

async function inBatches<T>(items: T[], width: number, run: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: width }, worker));
}
