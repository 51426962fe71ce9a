import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../src/store/database.js';
import { KyselySandboxStore } from '../../src/store/sandbox-store.js';
import { startTempPostgres } from '../support/postgres.js';
import { sandboxStoreSuite } from './sandbox-store-suite.js';

sandboxStoreSuite('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'den-sqlite-'));
  const { db } = await openDatabase({ sqlitePath: join(dir, 'den.db') });
  return {
    store: new KyselySandboxStore(db),
    async close() {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

sandboxStoreSuite('PostgreSQL', async () => {
  const pg = await startTempPostgres();
  const { db } = await openDatabase({ sqlitePath: '', postgresUrl: pg.url });
  return {
    store: new KyselySandboxStore(db),
    async close() {
      await db.destroy();
      pg.stop();
    },
  };
});
