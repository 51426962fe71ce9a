import type { Kysely, Migration } from 'kysely';

/**
 * Schema migrations, in order. Only portable column types and constraints (text, integer, real), so the same
 * migrations run on SQLite and PostgreSQL. Never edit a released migration; add a new one.
 */
export const migrations: Record<string, Migration> = {
  '0001_sandboxes': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('sandboxes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.unique())
        .addColumn('image', 'text', (c) => c.notNull())
        .addColumn('runtime', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('desired_state', 'text', (c) => c.notNull())
        .addColumn('cpus', 'real', (c) => c.notNull())
        .addColumn('memory_mb', 'integer', (c) => c.notNull())
        .addColumn('disk_mb', 'integer', (c) => c.notNull())
        .addColumn('pids', 'integer', (c) => c.notNull())
        .addColumn('env_json', 'text', (c) => c.notNull())
        .addColumn('metadata_json', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('last_error', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('sandboxes_state').on('sandboxes').column('state').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('sandboxes').execute();
    },
  },
  '0002_sandbox_network': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('sandboxes').addColumn('address', 'text').execute();
      await db.schema
        .alterTable('sandboxes')
        .addColumn('network_json', 'text', (c) => c.notNull().defaultTo('{"policy":"full","allow":[]}'))
        .execute();
      await db.schema
        .alterTable('sandboxes')
        .addColumn('preview_public', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .alterTable('sandboxes')
        .addColumn('preview_token', 'text', (c) => c.notNull().defaultTo(''))
        .execute();
      // Two sandboxes must never share an address, even when two creates race.
      await db.schema.createIndex('sandboxes_address').unique().on('sandboxes').column('address').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropIndex('sandboxes_address').execute();
      for (const c of ['preview_token', 'preview_public', 'network_json', 'address']) {
        await db.schema.alterTable('sandboxes').dropColumn(c).execute();
      }
    },
  },
  '0003_sandbox_timeouts': {
    async up(db: Kysely<unknown>) {
      // ISO-8601 UTC text (fixed width), so `timeout_at <= now` compares correctly as text in both dialects.
      await db.schema.alterTable('sandboxes').addColumn('timeout_at', 'text').execute();
      await db.schema
        .alterTable('sandboxes')
        .addColumn('on_timeout', 'text', (c) => c.notNull().defaultTo('delete'))
        .execute();
      // The E2B API's per-sandbox secret for envd (X-Access-Token); null = envd calls need no token.
      await db.schema.alterTable('sandboxes').addColumn('envd_access_token', 'text').execute();
      await db.schema.createIndex('sandboxes_timeout_at').on('sandboxes').column('timeout_at').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropIndex('sandboxes_timeout_at').execute();
      for (const c of ['envd_access_token', 'on_timeout', 'timeout_at']) {
        await db.schema.alterTable('sandboxes').dropColumn(c).execute();
      }
    },
  },
  '0004_api_keys': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('api_keys')
        .addColumn('name', 'text', (c) => c.primaryKey())
        // SHA-256 (hex) of the key: den never stores a key, so a copy of the database does not grant access.
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('last_used_at', 'text')
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('api_keys').execute();
    },
  },
  '0005_sandbox_pause': {
    async up(db: Kysely<unknown>) {
      // {memory, reason, at} while paused; null otherwise.
      await db.schema.alterTable('sandboxes').addColumn('pause_json', 'text').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('sandboxes').dropColumn('pause_json').execute();
    },
  },
  '0007_warm_pool': {
    async up(db: Kysely<unknown>) {
      // 1 while the sandbox waits unassigned in the warm pool (hidden from the API until a create takes it).
      await db.schema
        .alterTable('sandboxes')
        .addColumn('pooled', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('sandboxes').dropColumn('pooled').execute();
    },
  },
  '0008_sandbox_idle': {
    async up(db: Kysely<unknown>) {
      // Idle auto-pause: the timeout (ms, null = never) and the last activity seen, saved every few seconds.
      await db.schema.alterTable('sandboxes').addColumn('idle_timeout_ms', 'bigint').execute();
      await db.schema.alterTable('sandboxes').addColumn('last_activity_at', 'text').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('sandboxes').dropColumn('last_activity_at').execute();
      await db.schema.alterTable('sandboxes').dropColumn('idle_timeout_ms').execute();
    },
  },
};
