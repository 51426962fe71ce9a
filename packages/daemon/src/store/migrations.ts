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
};
