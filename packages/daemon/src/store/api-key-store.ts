import { DenError } from '@den/shared';
import type { Selectable } from 'kysely';
import type { ApiKeyRecord, ApiKeyStore } from '../services/ports.js';
import { type ApiKeysTable, type DenDb, isUniqueViolation } from './database.js';

function toRecord(row: Selectable<ApiKeysTable>): ApiKeyRecord {
  return { name: row.name, keyHash: row.key_hash, createdAt: row.created_at, lastUsedAt: row.last_used_at };
}

export class KyselyApiKeyStore implements ApiKeyStore {
  constructor(private readonly db: DenDb) {}

  async insert(r: ApiKeyRecord): Promise<void> {
    try {
      await this.db
        .insertInto('api_keys')
        .values({ name: r.name, key_hash: r.keyHash, created_at: r.createdAt, last_used_at: r.lastUsedAt })
        .execute();
    } catch (err) {
      // A hash collision of two random 190-bit keys does not happen; a unique violation is the name.
      if (isUniqueViolation(err) || isPrimaryKeyViolation(err)) {
        throw new DenError(
          'API_KEY_EXISTS',
          `an API key named "${r.name}" already exists: choose another name or remove it with \`den key rm ${r.name}\``,
          { name: r.name },
        );
      }
      throw err;
    }
  }

  async list(): Promise<ApiKeyRecord[]> {
    return (await this.db.selectFrom('api_keys').selectAll().orderBy('created_at').orderBy('name').execute()).map(
      toRecord,
    );
  }

  async getByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.db.selectFrom('api_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
    return row && toRecord(row);
  }

  async delete(name: string): Promise<boolean> {
    const result = await this.db.deleteFrom('api_keys').where('name', '=', name).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async touch(name: string, lastUsedAt: string): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: lastUsedAt }).where('name', '=', name).execute();
  }
}

/** SQLite reports a duplicate primary key with its own code (PostgreSQL uses 23505 for both). */
function isPrimaryKeyViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
