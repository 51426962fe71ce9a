import SQLite from 'better-sqlite3';
import {
  type Generated,
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  PostgresDialect,
  SqliteDialect,
} from 'kysely';
import pg from 'pg';
import { migrations } from './migrations.js';

/** Row shapes. JSON columns are text (portable across SQLite and PostgreSQL); times are ISO-8601 text. */
export interface SandboxesTable {
  id: string;
  name: string | null;
  image: string;
  runtime: string;
  state: string;
  desired_state: string;
  cpus: number;
  memory_mb: number;
  disk_mb: number;
  pids: number;
  env_json: string;
  metadata_json: string;
  created_at: string;
  started_at: string | null;
  last_error: string | null;
  updated_at: string;
  address: string | null;
  /** NetworkPolicy as JSON */
  network_json: string;
  /** 0 or 1 (portable boolean) */
  preview_public: number;
  preview_token: string;
  /** bumped on every update: lets the reconcile loop notice concurrent changes */
  version: Generated<number>;
  /** ISO-8601 UTC; null = no timeout */
  timeout_at: string | null;
  /** 'delete' | 'stop' */
  on_timeout: string;
  envd_access_token: string | null;
  /** PauseInfo as JSON while paused */
  pause_json: string | null;
  /** 0 or 1: waiting unassigned in the warm pool */
  pooled: number;
  /** ms; bigint (PostgreSQL returns it as a string); null = no idle pause */
  idle_timeout_ms: number | string | null;
  /** ISO-8601 UTC */
  last_activity_at: string | null;
}

export interface ApiKeysTable {
  name: string;
  /** SHA-256 of the key, hex */
  key_hash: string;
  created_at: string;
  last_used_at: string | null;
}

export interface Database {
  sandboxes: SandboxesTable;
  api_keys: ApiKeysTable;
}

export type DenDb = Kysely<Database>;

export interface OpenedDatabase {
  db: DenDb;
  dialect: 'sqlite' | 'postgres';
  /** for `den status`: which database this daemon uses */
  description: string;
}

class StaticProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

/** Opens SQLite (a file) or PostgreSQL (a URL) and brings the schema up to date. */
export async function openDatabase(opts: {
  sqlitePath: string;
  postgresUrl?: string | undefined;
}): Promise<OpenedDatabase> {
  let opened: OpenedDatabase;
  if (opts.postgresUrl) {
    const pool = new pg.Pool({ connectionString: opts.postgresUrl, max: 10 });
    opened = {
      db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }),
      dialect: 'postgres',
      description: `postgres ${new URL(opts.postgresUrl).host}`,
    };
  } else {
    const sqlite = new SQLite(opts.sqlitePath);
    // WAL: readers do not block the writer; synchronous=NORMAL is durable across process crashes in WAL mode.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    opened = {
      db: new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) }),
      dialect: 'sqlite',
      description: `sqlite ${opts.sqlitePath}`,
    };
  }
  const { error, results } = await new Migrator({ db: opened.db, provider: new StaticProvider() }).migrateToLatest();
  if (error) {
    await opened.db.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${(error as Error).message}`);
  }
  return opened;
}

/** True when the error is a unique-constraint violation in either dialect. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string };
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === '23505';
}
