import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KyselyApiKeyStore } from '../../src/store/api-key-store.js';
import { openDatabase } from '../../src/store/database.js';
import { startTempPostgres } from '../support/postgres.js';
import { apiKeyStoreSuite } from './api-key-store-suite.js';

apiKeyStoreSuite('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'den-sqlite-'));
  const { db } = await openDatabase({ sqlitePath: join(dir, 'den.db') });
  return {
    store: new KyselyApiKeyStore(db),
    async close() {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

apiKeyStoreSuite('PostgreSQL', async () => {
  const pg = await startTempPostgres();
  const { db } = await openDatabase({ sqlitePath: '', postgresUrl: pg.url });
  return {
    store: new KyselyApiKeyStore(db),
    async close() {
      await db.destroy();
      pg.stop();
    },
  };
});
