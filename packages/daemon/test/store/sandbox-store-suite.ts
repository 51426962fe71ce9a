import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DenError, newSandboxId } from '@den/shared';
import type { SandboxStore } from '../../src/services/ports.js';
import { sandboxRecord } from '../support/sandbox-record.js';

/** One suite for every SandboxStore implementation (SQLite and PostgreSQL behind Kysely). */
export function sandboxStoreSuite(name: string, open: () => Promise<{ store: SandboxStore; close(): Promise<void> }>) {
  describe(`SandboxStore on ${name}`, () => {
    let store: SandboxStore;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await open());
    });
    after(async () => close?.());

    test('idle fields round-trip, including a timeout beyond 32 bits', async () => {
      const rec = sandboxRecord({ idleTimeoutMs: 30 * 24 * 3600 * 1000, lastActivityAt: '2026-11-22T10:00:00.000Z' });
      await store.insert(rec);
      const got = await store.get(rec.id);
      assert.equal(got?.idleTimeoutMs, 30 * 24 * 3600 * 1000);
      assert.equal(got?.lastActivityAt, '2026-11-22T10:00:00.000Z');
      const cleared = await store.update(rec.id, { idleTimeoutMs: null, lastActivityAt: '2026-11-22T10:00:05.000Z' });
      assert.equal(cleared?.idleTimeoutMs, null);
      assert.equal(cleared?.lastActivityAt, '2026-11-22T10:00:05.000Z');
      await store.delete(rec.id);
    });

    test('timeout fields and the envd token round-trip; listExpired finds due sandboxes meant to run', async () => {
      const now = new Date();
      const past = new Date(now.getTime() - 1000).toISOString();
      const future = new Date(now.getTime() + 60_000).toISOString();
      const due = sandboxRecord({ timeoutAt: past, onTimeout: 'stop', envdAccessToken: 'tok' });
      const later = sandboxRecord({ timeoutAt: future });
      const stopped = sandboxRecord({ timeoutAt: past, desiredState: 'stopped' });
      const none = sandboxRecord();
      for (const r of [due, later, stopped, none]) await store.insert(r);
      assert.deepEqual(await store.get(due.id), due);
      const expired = (await store.listExpired(now.toISOString())).map((r) => r.id);
      assert.ok(expired.includes(due.id));
      for (const r of [later, stopped, none]) assert.ok(!expired.includes(r.id), `${r.id} is not expired`);
      await store.update(due.id, { timeoutAt: null });
      assert.ok(!(await store.listExpired(now.toISOString())).some((r) => r.id === due.id));
    });

    test('insert, get, get by name round-trip every field', async () => {
      const r = sandboxRecord({ name: `n-${Date.now()}` });
      await store.insert(r);
      assert.deepEqual(await store.get(r.id), r);
      assert.deepEqual(await store.getByName(r.name!), r);
      assert.equal(await store.get(newSandboxId()), undefined);
    });

    test('a taken name is NAME_TAKEN; unnamed sandboxes do not collide', async () => {
      const name = `dup-${Date.now()}`;
      await store.insert(sandboxRecord({ name }));
      await assert.rejects(
        store.insert(sandboxRecord({ name })),
        (err: unknown) => err instanceof DenError && err.code === 'NAME_TAKEN',
      );
      await store.insert(sandboxRecord());
      await store.insert(sandboxRecord());
    });

    test('an address belongs to one sandbox at a time; null addresses do not collide', async () => {
      const address = `10.250.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
      const r = sandboxRecord({ address });
      await store.insert(r);
      await assert.rejects(store.insert(sandboxRecord({ address })), /already taken/);
      await store.update(r.id, { network: { policy: 'full', allow: [] }, previewPublic: true });
      assert.deepEqual((await store.get(r.id))?.network, { policy: 'full', allow: [] });
      assert.equal((await store.get(r.id))?.previewPublic, true);
      await store.delete(r.id);
      await store.insert(sandboxRecord({ address }));
    });

    test('update patches only the given fields', async () => {
      const r = sandboxRecord();
      await store.insert(r);
      const updated = await store.update(r.id, { state: 'running', startedAt: '2026-01-01T00:00:00.000Z' });
      assert.deepEqual(updated, { ...r, state: 'running', startedAt: '2026-01-01T00:00:00.000Z' });
      assert.equal(await store.update(newSandboxId(), { state: 'running' }), undefined);
    });

    test('list filters by state, counts group by state, delete removes', async () => {
      const r = sandboxRecord({ state: 'stopped' });
      await store.insert(r);
      const stopped = await store.list({ state: 'stopped' });
      assert.ok(stopped.some((s) => s.id === r.id));
      assert.ok(stopped.every((s) => s.state === 'stopped'));
      const counts = await store.countByState();
      assert.ok((counts.stopped ?? 0) >= 1);
      await store.delete(r.id);
      assert.equal(await store.get(r.id), undefined);
    });
  });
}
