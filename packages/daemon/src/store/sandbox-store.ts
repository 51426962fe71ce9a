import { DenError } from '@den/shared';
import type { Selectable } from 'kysely';
import type {
  NetworkPolicy,
  PauseInfo,
  RuntimeName,
  SandboxRecord,
  SandboxState,
  SandboxStore,
} from '../services/ports.js';
import { type DenDb, isUniqueViolation, type SandboxesTable } from './database.js';

function toRecord(row: Selectable<SandboxesTable>): SandboxRecord {
  return {
    id: row.id,
    name: row.name,
    image: row.image,
    runtime: row.runtime as RuntimeName,
    state: row.state as SandboxState,
    desiredState: row.desired_state as SandboxRecord['desiredState'],
    cpus: Number(row.cpus),
    memoryMB: Number(row.memory_mb),
    diskMB: Number(row.disk_mb),
    pids: Number(row.pids),
    env: JSON.parse(row.env_json) as Record<string, string>,
    metadata: JSON.parse(row.metadata_json) as Record<string, string>,
    createdAt: row.created_at,
    startedAt: row.started_at,
    lastError: row.last_error,
    address: row.address,
    network: JSON.parse(row.network_json) as NetworkPolicy,
    previewPublic: Number(row.preview_public) === 1,
    previewToken: row.preview_token,
    timeoutAt: row.timeout_at,
    onTimeout: row.on_timeout as SandboxRecord['onTimeout'],
    envdAccessToken: row.envd_access_token,
    pause: row.pause_json ? (JSON.parse(row.pause_json) as PauseInfo) : null,
    pooled: Number(row.pooled) === 1,
    idleTimeoutMs: row.idle_timeout_ms === null ? null : Number(row.idle_timeout_ms),
    lastActivityAt: row.last_activity_at,
  };
}

type Columns = Omit<SandboxesTable, 'version' | 'id' | 'created_at'>;

function toColumns(patch: Partial<SandboxRecord>): Partial<Columns> {
  const out: Partial<Columns> = {};
  if (patch.name !== undefined) out.name = patch.name;
  if (patch.image !== undefined) out.image = patch.image;
  if (patch.runtime !== undefined) out.runtime = patch.runtime;
  if (patch.state !== undefined) out.state = patch.state;
  if (patch.desiredState !== undefined) out.desired_state = patch.desiredState;
  if (patch.cpus !== undefined) out.cpus = patch.cpus;
  if (patch.memoryMB !== undefined) out.memory_mb = patch.memoryMB;
  if (patch.diskMB !== undefined) out.disk_mb = patch.diskMB;
  if (patch.pids !== undefined) out.pids = patch.pids;
  if (patch.env !== undefined) out.env_json = JSON.stringify(patch.env);
  if (patch.metadata !== undefined) out.metadata_json = JSON.stringify(patch.metadata);
  if (patch.startedAt !== undefined) out.started_at = patch.startedAt;
  if (patch.lastError !== undefined) out.last_error = patch.lastError;
  if (patch.address !== undefined) out.address = patch.address;
  if (patch.network !== undefined) out.network_json = JSON.stringify(patch.network);
  if (patch.previewPublic !== undefined) out.preview_public = patch.previewPublic ? 1 : 0;
  if (patch.previewToken !== undefined) out.preview_token = patch.previewToken;
  if (patch.timeoutAt !== undefined) out.timeout_at = patch.timeoutAt;
  if (patch.onTimeout !== undefined) out.on_timeout = patch.onTimeout;
  if (patch.envdAccessToken !== undefined) out.envd_access_token = patch.envdAccessToken;
  if (patch.pause !== undefined) out.pause_json = patch.pause ? JSON.stringify(patch.pause) : null;
  if (patch.pooled !== undefined) out.pooled = patch.pooled ? 1 : 0;
  if (patch.idleTimeoutMs !== undefined) out.idle_timeout_ms = patch.idleTimeoutMs;
  if (patch.lastActivityAt !== undefined) out.last_activity_at = patch.lastActivityAt;
  return out;
}

export class KyselySandboxStore implements SandboxStore {
  constructor(private readonly db: DenDb) {}

  async insert(r: SandboxRecord): Promise<void> {
    try {
      await this.db
        .insertInto('sandboxes')
        .values({
          ...(toColumns(r) as Columns),
          id: r.id,
          created_at: r.createdAt,
          updated_at: new Date().toISOString(),
        })
        .execute();
    } catch (err) {
      if (isUniqueViolation(err) && /address/.test(String(err))) {
        // The service allocates addresses under a lock; a collision means two daemons share one database.
        throw new DenError('INTERNAL', `address ${r.address} is already taken by another sandbox`);
      }
      if (isUniqueViolation(err)) {
        throw new DenError('NAME_TAKEN', `a sandbox named "${r.name}" already exists: choose another --name`);
      }
      throw err;
    }
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    const row = await this.db.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async getByName(name: string): Promise<SandboxRecord | undefined> {
    const row = await this.db.selectFrom('sandboxes').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toRecord(row);
  }

  async list(filter: { state?: SandboxState } = {}): Promise<SandboxRecord[]> {
    let q = this.db.selectFrom('sandboxes').selectAll().orderBy('created_at').orderBy('id');
    if (filter.state) q = q.where('state', '=', filter.state);
    return (await q.execute()).map(toRecord);
  }

  async listExpired(now: string): Promise<SandboxRecord[]> {
    const rows = await this.db
      .selectFrom('sandboxes')
      .selectAll()
      .where('timeout_at', 'is not', null)
      .where('timeout_at', '<=', now)
      .where('desired_state', '=', 'running')
      .orderBy('timeout_at')
      .execute();
    return rows.map(toRecord);
  }

  async update(
    id: string,
    patch: Partial<Omit<SandboxRecord, 'id' | 'createdAt'>>,
  ): Promise<SandboxRecord | undefined> {
    await this.db
      .updateTable('sandboxes')
      .set((eb) => ({ ...toColumns(patch), updated_at: new Date().toISOString(), version: eb('version', '+', 1) }))
      .where('id', '=', id)
      .execute();
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('sandboxes').where('id', '=', id).execute();
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('sandboxes')
      .select(['state', (eb) => eb.fn.countAll<string | number>().as('n')])
      .groupBy('state')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }
}
