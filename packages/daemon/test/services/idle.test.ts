import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ActivityTracker } from '../../src/services/activity.js';
import { IdleService } from '../../src/services/idle.js';
import { openDatabase } from '../../src/store/database.js';
import { KyselySandboxStore } from '../../src/store/sandbox-store.js';
import { sandboxRecord } from '../support/sandbox-record.js';

const silent = { info() {}, warn() {}, error() {} };

describe('IdleService', () => {
  let dir: string;
  let store: KyselySandboxStore;
  let closeDb: () => Promise<void>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'den-idle-'));
    const { db } = await openDatabase({ sqlitePath: join(dir, 'den.db') });
    store = new KyselySandboxStore(db);
    closeDb = () => db.destroy();
  });
  after(async () => {
    await closeDb?.();
    rmSync(dir, { recursive: true, force: true });
  });

  test("judges CPU use by share of a core over whole windows: gVisor's idle hum is idle, a build is not", async () => {
    const startedAt = new Date().toISOString();
    const running = { state: 'running' as const, startedAt, idleTimeoutMs: 1_000 };
    // CPU used so far grows with wall time at a fixed share of a core, as the sandbox's cgroup would report it.
    const shares = new Map<string, number>();
    for (const [share, name] of [
      [0.06, 'humming'],
      [0.15, 'humming-loaded'],
      [0.6, 'building'],
    ] as const) {
      const rec = sandboxRecord({ ...running, name });
      await store.insert(rec);
      shares.set(rec.id, share);
    }
    const t0 = process.hrtime.bigint();
    const paused: string[] = [];
    const idle = new IdleService({
      store,
      sandboxes: {
        async pause(id) {
          paused.push(id);
          await store.update(id, { state: 'paused' });
        },
      },
      activity: new ActivityTracker(),
      cpuTimeNs: async (id) => Math.round(Number(process.hrtime.bigint() - t0) * shares.get(id)!),
      log: silent,
      intervalMs: 250,
    });
    for (let i = 0; i < 14; i++) {
      await idle.tick();
      await sleep(250);
    }
    const names = await Promise.all(paused.map(async (id) => (await store.get(id))?.name));
    assert.deepEqual(names.sort(), ['humming', 'humming-loaded']);
  });
});
