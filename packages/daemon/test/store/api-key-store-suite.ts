import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DenError } from '@den/shared';
import { ApiKeyService, hashApiKey } from '../../src/services/api-keys.js';
import type { ApiKeyRecord, ApiKeyStore } from '../../src/services/ports.js';

/** One suite for every ApiKeyStore implementation (SQLite and PostgreSQL behind Kysely), and the service on it. */
export function apiKeyStoreSuite(name: string, open: () => Promise<{ store: ApiKeyStore; close(): Promise<void> }>) {
  describe(`ApiKeyStore on ${name}`, () => {
    let store: ApiKeyStore;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await open());
    });
    after(async () => close?.());

    let n = 0;
    const record = (over: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
      name: `key-${Date.now()}-${n++}`,
      keyHash: hashApiKey(`den_test${Math.random()}`),
      createdAt: new Date().toISOString(),
      lastUsedAt: null,
      ...over,
    });

    test('insert, list, get by hash, touch and delete round-trip every field', async () => {
      const r = record();
      await store.insert(r);
      assert.deepEqual(await store.getByHash(r.keyHash), r);
      assert.deepEqual(
        (await store.list()).find((k) => k.name === r.name),
        r,
      );
      const used = new Date().toISOString();
      await store.touch(r.name, used);
      assert.equal((await store.getByHash(r.keyHash))?.lastUsedAt, used);
      assert.equal(await store.delete(r.name), true);
      assert.equal(await store.delete(r.name), false);
      assert.equal(await store.getByHash(r.keyHash), undefined);
    });

    test('a taken name is API_KEY_EXISTS', async () => {
      const r = record();
      await store.insert(r);
      await assert.rejects(
        store.insert(record({ name: r.name })),
        (err: unknown) => err instanceof DenError && err.code === 'API_KEY_EXISTS',
      );
    });

    test('the service stores only the hash, verifies the key and refuses unknown or removed keys', async () => {
      const keys = new ApiKeyService(store);
      const created = await keys.create(`svc-${Date.now()}`);
      assert.match(created.key, /^den_[0-9A-Za-z]{32}$/);
      const stored = (await store.list()).find((k) => k.name === created.name)!;
      assert.equal(stored.keyHash, hashApiKey(created.key));
      assert.ok(!JSON.stringify(stored).includes(created.key.slice(4)), 'the key itself is not stored');
      const verified = await keys.verify(created.key);
      assert.equal(verified?.name, created.name);
      assert.ok(verified?.lastUsedAt, 'verify notes the use');
      assert.equal(await keys.verify(`${created.key}x`), undefined);
      assert.equal(await keys.verify(''), undefined);
      await keys.remove(created.name);
      assert.equal(await keys.verify(created.key), undefined);
      await assert.rejects(
        keys.remove(created.name),
        (err: unknown) => err instanceof DenError && err.code === 'API_KEY_NOT_FOUND',
      );
      await assert.rejects(
        keys.create('bad name!'),
        (err: unknown) => err instanceof DenError && err.code === 'INVALID_ARGUMENT',
      );
    });
  });
}
