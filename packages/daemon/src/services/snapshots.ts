import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type CreateSandboxRequest,
  DenError,
  isSandboxId,
  newSandboxId,
  type RuntimeName,
  type Snapshot,
} from '@den/shared';
import { KeyedMutex } from './keyed-mutex.js';
import type { ImageCatalog, ObjectStore, SandboxRecord, SnapshotArchiver, SnapshotManifest } from './ports.js';
import type { SandboxService } from './sandbox-service.js';

/** Where snapshots live in the object store: `snapshots/<id>/` (parts and manifest.json, see snapshot-archive.ts). */
const PREFIX = 'snapshots';
const MANIFEST = /^snapshots\/([a-z0-9]{20})\/manifest\.json$/;
/** Written into every manifest's source so that other contents of a shared bucket are never taken for snapshots. */
const KIND = 'den-sandbox-snapshot';

export interface SnapshotServiceDeps {
  archive: SnapshotArchiver;
  objects: ObjectStore;
  sandboxes: SandboxService;
  images: ImageCatalog;
}

/**
 * Snapshots of sandboxes in the object store: the sandbox's files (its overlay upper dir) and, for a running or
 * paused runsc sandbox, its memory image, so that a sandbox created from the snapshot continues the processes. The
 * object store is the only record of them: daemons that share a bucket share their snapshots, and a snapshot taken
 * on one machine is restored on another that never ran the sandbox.
 */
export class SnapshotService {
  /** a name is checked and claimed by one create at a time (per daemon; daemons sharing a bucket may still race) */
  private readonly naming = new KeyedMutex();

  constructor(private readonly deps: SnapshotServiceDeps) {}

  async create(ref: string, opts: { name?: string } = {}): Promise<Snapshot> {
    const { name } = opts;
    if (name !== undefined && isSandboxId(name)) {
      throw new DenError('INVALID_ARGUMENT', `snapshot name "${name}" looks like an id: add a hyphen`);
    }
    const take = async (): Promise<Snapshot> => {
      if (name !== undefined && (await this.find(name)) !== undefined) {
        throw new DenError('NAME_TAKEN', `a snapshot named "${name}" already exists: choose another --name`);
      }
      const id = newSandboxId();
      const manifest = await this.deps.sandboxes.holdStill(ref, ({ record, upperDir, memoryDir, memoryNotSaved }) =>
        this.deps.archive.write({
          prefix: `${PREFIX}/${id}`,
          upperDir,
          extras: memoryDir ? [{ name: 'memory', dir: memoryDir }] : [],
          source: {
            ...describe(record, name, memoryDir !== undefined),
            ...(memoryNotSaved ? { memoryNotSaved } : {}),
          },
        }),
      );
      return toSnapshot(id, manifest);
    };
    // Only snapshots with the same name wait for each other (the check and the write are not one step).
    return name === undefined ? take() : this.naming.run(name, take);
  }

  async list(): Promise<Snapshot[]> {
    const ids = await this.ids();
    const manifests = await Promise.all(ids.map((id) => this.read(id).catch(() => undefined)));
    return ids
      .flatMap((id, i) => (manifests[i] ? [toSnapshot(id, manifests[i])] : []))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** A snapshot by id or name; SNAPSHOT_NOT_FOUND naming how to list them. */
  async get(ref: string): Promise<Snapshot> {
    return toSnapshot(...(await this.stored(ref)));
  }

  async remove(ref: string): Promise<void> {
    const snapshot = await this.get(ref);
    // The manifest goes first: without it the parts are no snapshot, even if deleting them is interrupted.
    await this.deps.objects.delete(`${PREFIX}/${snapshot.id}/manifest.json`);
    await this.deps.objects.deletePrefix(`${PREFIX}/${snapshot.id}/`);
  }

  /**
   * A new sandbox from a snapshot: image, runtime and limits come from the snapshot unless the request sets limits;
   * its files (and memory image) are restored, verified, before its first start. A corrupt snapshot fails with
   * SNAPSHOT_CORRUPT and leaves nothing behind (the create rolls back).
   */
  async createSandbox(
    req: CreateSandboxRequest & { fromSnapshot: string },
    options: { envdAccessToken?: string } = {},
  ): Promise<SandboxRecord> {
    const [id, manifest] = await this.stored(req.fromSnapshot);
    const snapshot = toSnapshot(id, manifest);
    if (req.image !== undefined && req.image !== snapshot.image) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `snapshot "${req.fromSnapshot}" was taken from image "${snapshot.image}"; leave out image (or use that one)`,
      );
    }
    if (req.runtime !== undefined && req.runtime !== snapshot.runtime) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `snapshot "${req.fromSnapshot}" was taken on ${snapshot.runtime}; leave out runtime (or use ${snapshot.runtime})`,
      );
    }
    if (req.diskMB !== undefined && req.diskMB < snapshot.diskMB) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `snapshot "${req.fromSnapshot}" comes from a ${snapshot.diskMB} MB disk; diskMB must be at least that`,
      );
    }
    // The image must exist here too: its layers lie under the snapshot's files.
    await this.deps.images.get(snapshot.image);
    const { fromSnapshot: _ref, ...rest } = req;
    const request: CreateSandboxRequest = {
      ...rest,
      image: snapshot.image,
      runtime: snapshot.runtime,
      cpus: req.cpus ?? snapshot.cpus,
      memoryMB: req.memoryMB ?? snapshot.memoryMB,
      diskMB: req.diskMB ?? snapshot.diskMB,
      env: { ...parseJson<Record<string, string>>(manifest.source.env, {}), ...(req.env ?? {}) },
    };
    return this.deps.sandboxes.create(request, {
      ...options,
      fillDisk: ({ upperDir, checkpointDir }) =>
        this.deps.archive
          .restore(`${PREFIX}/${snapshot.id}`, {
            upperDir,
            // The memory image only matters to a runtime that can restore it; without it the sandbox boots fresh.
            ...(snapshot.memory ? { extrasDir: `${checkpointDir}.extras` } : {}),
          })
          .then(() => (snapshot.memory ? moveMemoryImage(`${checkpointDir}.extras`, checkpointDir) : undefined)),
    });
  }

  /** A snapshot's id and manifest by id or name; SNAPSHOT_NOT_FOUND naming how to list them. */
  private async stored(ref: string): Promise<[string, SnapshotManifest]> {
    const found = await this.find(ref);
    if (!found) {
      throw new DenError('SNAPSHOT_NOT_FOUND', `no snapshot "${ref}": list snapshots with \`den snapshot ls\``, {
        ref,
      });
    }
    return found;
  }

  private async find(ref: string): Promise<[string, SnapshotManifest] | undefined> {
    if (isSandboxId(ref)) {
      const byId = await this.read(ref).catch((err: unknown) => {
        if (err instanceof DenError && err.code === 'OBJECT_NOT_FOUND') return undefined;
        throw err;
      });
      if (byId) return [ref, byId];
    }
    for (const id of await this.ids()) {
      const manifest = await this.read(id).catch(() => undefined);
      if (manifest?.source.name === ref) return [id, manifest];
    }
    return undefined;
  }

  /** The ids of every snapshot in the store (those with a manifest). */
  private async ids(): Promise<string[]> {
    return (await this.deps.objects.list(`${PREFIX}/`)).flatMap((o) => MANIFEST.exec(o.key)?.[1] ?? []);
  }

  /** A den snapshot's manifest; undefined for something else stored under the same kind of key. */
  private async read(id: string): Promise<SnapshotManifest | undefined> {
    const manifest = await this.deps.archive.manifest(`${PREFIX}/${id}`);
    return manifest.source.kind === KIND ? manifest : undefined;
  }
}

/** What a snapshot records of its sandbox (manifest `source`: strings only). */
function describe(rec: SandboxRecord, name: string | undefined, memory: boolean): Record<string, string> {
  return {
    kind: KIND,
    ...(name !== undefined ? { name } : {}),
    sandboxId: rec.id,
    ...(rec.name ? { sandboxName: rec.name } : {}),
    image: rec.image,
    runtime: rec.runtime,
    cpus: String(rec.cpus),
    memoryMB: String(rec.memoryMB),
    diskMB: String(rec.diskMB),
    env: JSON.stringify(rec.env),
    memory: String(memory),
  };
}

function toSnapshot(id: string, manifest: SnapshotManifest): Snapshot {
  const s = manifest.source;
  return {
    id,
    name: s.name ?? null,
    sandboxId: s.sandboxId ?? '',
    sandboxName: s.sandboxName ?? null,
    image: s.image ?? 'base',
    runtime: (s.runtime === 'runc' ? 'runc' : 'runsc') satisfies RuntimeName,
    cpus: Number(s.cpus),
    memoryMB: Number(s.memoryMB),
    diskMB: Number(s.diskMB),
    memory: s.memory === 'true' && manifest.parts.some((p) => p.name === 'extra/memory'),
    memoryNotSaved: s.memoryNotSaved ?? null,
    sizeBytes: manifest.parts.reduce((n, p) => n + p.size, 0),
    createdAt: manifest.createdAt,
  };
}

function parseJson<T>(text: string | undefined, fallback: T): T {
  try {
    return text === undefined ? fallback : (JSON.parse(text) as T);
  } catch {
    return fallback;
  }
}

/** The archive restores extras to `<dir>/<name>`: the memory part becomes the sandbox's checkpoint dir. */
async function moveMemoryImage(extrasDir: string, checkpointDir: string): Promise<void> {
  await rm(checkpointDir, { recursive: true, force: true });
  await rename(join(extrasDir, 'memory'), checkpointDir);
  await rm(extrasDir, { recursive: true, force: true });
}
