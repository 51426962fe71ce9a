import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { lstat, mkdir, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { DenError } from '@den/shared';
import type {
  ObjectStore,
  RestoreSnapshotOptions,
  SnapshotArchiver,
  SnapshotManifest,
  SnapshotPart,
  WriteSnapshotOptions,
} from '../services/ports.js';
import { checkKey } from './object-store/keys.js';

/**
 * Snapshots of a sandbox's filesystem in an object store, readable by any daemon that shares the store.
 *
 * A snapshot under key prefix `P` is:
 * - `P/upper.tar.zst`: the sandbox's overlay upper dir as a POSIX tar compressed with zstd;
 * - `P/extra/<name>.tar.zst`: optional extra directories (e.g. the runsc checkpoint image with the memory);
 * - `P/manifest.json`: every part's key, size, SHA-256 and creation time plus where the snapshot came from. It is
 *   written last, so a snapshot whose writer died has no manifest and does not exist for readers.
 *
 * GNU tar (Debian's, driven as a binary) archives what an overlay upper dir holds: whiteouts (character devices
 * 0/0), opaque directories and redirects (`trusted.overlay.*` xattrs), hard links, sparse files, setuid/sticky
 * modes, numeric owners (uid 1000 inside is 1000 here), file capabilities. It runs zstd itself (`-I`), multi-
 * threaded; Node only moves the compressed bytes between tar and the object store, hashing them on the way.
 *
 * Restore extracts every part into a staging directory beside its target, verifying each part's size and SHA-256
 * while it streams, and moves the staged directories into place only when all parts verified. A corrupt part
 * fails with SNAPSHOT_CORRUPT and leaves the targets as they were. Extraction needs root (device nodes, owners,
 * trusted.* xattrs), as the daemon is.
 */

export const SNAPSHOT_FORMAT = 'den-snapshot/1';

export type { RestoreSnapshotOptions, SnapshotManifest, SnapshotPart, WriteSnapshotOptions };

const EXTRA_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * xattr namespaces a sandbox's files carry: trusted.* (overlayfs' opaque/redirect/metacopy markers), user.*, and
 * file capabilities. security.selinux and friends belong to the host's policy, not to the sandbox.
 */
export const XATTR_ARGS = [
  '--xattrs',
  '--xattrs-include=trusted.*',
  '--xattrs-include=user.*',
  '--xattrs-include=security.capability',
];

export class SnapshotArchive implements SnapshotArchiver {
  private readonly tar: string;
  private readonly zstdLevel: number;

  constructor(
    private readonly store: ObjectStore,
    opts: { tarBinary?: string; zstdLevel?: number } = {},
  ) {
    this.tar = opts.tarBinary ?? 'tar';
    this.zstdLevel = opts.zstdLevel ?? 3;
  }

  /** Archives the upper dir (and extras) into the store and returns the manifest it wrote last. */
  async write(opts: WriteSnapshotOptions): Promise<SnapshotManifest> {
    const prefix = checkSnapshotPrefix(opts.prefix);
    const extras = opts.extras ?? [];
    for (const extra of extras) {
      if (!EXTRA_NAME.test(extra.name)) {
        throw new DenError(
          'INVALID_ARGUMENT',
          `snapshot extra name "${extra.name}" must be lowercase letters, digits, "-" or "_", like "memory"`,
        );
      }
    }
    if (new Set(extras.map((e) => e.name)).size !== extras.length) {
      throw new DenError('INVALID_ARGUMENT', 'snapshot extras must have distinct names');
    }
    await requireDirectory(opts.upperDir, 'snapshot source');
    for (const extra of extras) await requireDirectory(extra.dir, `snapshot extra "${extra.name}"`);
    if ((await this.store.list(`${prefix}/`)).length > 0) {
      throw new DenError(
        'FILE_EXISTS',
        `a snapshot already exists at "${prefix}" in ${this.store.location}; delete it first or use a new id`,
      );
    }

    const sources = [
      { name: 'upper', key: `${prefix}/upper.tar.zst`, dir: opts.upperDir },
      ...extras.map((e) => ({ name: `extra/${e.name}`, key: `${prefix}/extra/${e.name}.tar.zst`, dir: e.dir })),
    ];
    const parts: SnapshotPart[] = [];
    try {
      for (const source of sources) {
        const stored = await this.putArchive(source.key, source.dir);
        parts.push({ name: source.name, key: source.key, encoding: 'tar+zstd', ...stored, createdAt: now() });
      }
      const manifest: SnapshotManifest = {
        format: SNAPSHOT_FORMAT,
        prefix,
        createdAt: now(),
        source: { ...opts.source, hostname: hostname() },
        parts,
      };
      await this.store.put(manifestKey(prefix), Readable.from([Buffer.from(JSON.stringify(manifest, null, 2))]));
      return manifest;
    } catch (err) {
      // Parts without a manifest are no snapshot; remove them so they do not take space forever.
      await this.store.deletePrefix(`${prefix}/`).catch(() => {});
      throw err;
    }
  }

  /** The manifest of the snapshot at `prefix`; OBJECT_NOT_FOUND when there is none, SNAPSHOT_CORRUPT when unreadable. */
  async manifest(prefix: string): Promise<SnapshotManifest> {
    prefix = checkSnapshotPrefix(prefix);
    let body: Readable;
    try {
      body = await this.store.get(manifestKey(prefix));
    } catch (err) {
      if (err instanceof DenError && err.code === 'OBJECT_NOT_FOUND') {
        throw new DenError('OBJECT_NOT_FOUND', `no snapshot at "${prefix}" in ${this.store.location}`, { prefix });
      }
      throw err;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return parseManifest(Buffer.concat(chunks).toString('utf8'), prefix);
  }

  /**
   * Restores the snapshot at `prefix`: stages, verifies, then moves into place (see the module comment). Returns
   * its manifest.
   */
  async restore(prefix: string, opts: RestoreSnapshotOptions): Promise<SnapshotManifest> {
    const manifest = await this.manifest(prefix);
    const targets = manifest.parts.flatMap((part) => {
      if (part.name === 'upper') return [{ part, target: opts.upperDir }];
      if (opts.extrasDir === undefined) return [];
      return [{ part, target: join(opts.extrasDir, part.name.slice('extra/'.length)) }];
    });
    if (!targets.some((t) => t.part.name === 'upper')) {
      throw corrupt(manifest.prefix, 'its manifest lists no upper part');
    }
    if (!opts.replace) {
      for (const { target } of targets) {
        if (await exists(target)) {
          throw new DenError(
            'FILE_EXISTS',
            `cannot restore snapshot "${manifest.prefix}" to ${target}: it exists; remove it or restore with replace`,
          );
        }
      }
    }

    const staged: { staging: string; target: string }[] = [];
    const replaced: string[] = [];
    /** parent directories this restore created, removed again if it fails */
    const madeParents: string[] = [];
    let done = false;
    try {
      for (const { part, target } of targets) {
        const made = await mkdir(dirname(target), { recursive: true });
        if (made) madeParents.push(made);
        // Beside the target, so the final rename stays on one filesystem.
        const staging = join(dirname(target), `.${basename(target)}.restoring-${randomBytes(6).toString('hex')}`);
        staged.push({ staging, target });
        await mkdir(staging);
        await this.extractPart(manifest.prefix, part, staging);
      }
      for (const { staging, target } of staged) {
        if (await exists(target)) {
          const old = join(dirname(target), `.${basename(target)}.replaced-${randomBytes(6).toString('hex')}`);
          await rename(target, old);
          replaced.push(old);
        }
        await rename(staging, target);
      }
      done = true;
    } finally {
      for (const { staging } of staged) await rm(staging, { recursive: true, force: true });
      if (!done) for (const dir of madeParents.reverse()) await rm(dir, { recursive: true, force: true });
    }
    for (const old of replaced) await rm(old, { recursive: true, force: true });
    return manifest;
  }

  /** Deletes every object of the snapshot at `prefix`; returns how many. */
  async delete(prefix: string): Promise<number> {
    prefix = checkSnapshotPrefix(prefix);
    // The manifest first: a snapshot half deleted must not look complete.
    await this.store.delete(manifestKey(prefix));
    return (await this.store.deletePrefix(`${prefix}/`)) + 1;
  }

  private async putArchive(key: string, dir: string): Promise<{ size: number; sha256: string }> {
    const args = [
      '--create',
      '--file=-',
      `--directory=${dir}`,
      // pax headers carry xattrs, nanosecond times and long names; atime/ctime only make archives differ.
      '--format=posix',
      '--pax-option=delete=atime,delete=ctime',
      ...XATTR_ARGS,
      '--numeric-owner',
      '--sparse',
      '--one-file-system',
      `--use-compress-program=zstd -T0 -${this.zstdLevel} -q`,
      '.',
    ];
    const child = spawn(this.tar, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const exit = exitOf(child);
    // Consumed from now on: Node resumes (discards) a child's stdout that has no reader when the child exits, and
    // a small archive is complete before the store starts reading.
    const stdout = child.stdout!.pipe(new PassThrough({ highWaterMark: 1024 * 1024 }));
    const output = Readable.from(archiveOutput(stdout, exit, dir));
    try {
      return await this.store.put(key, output);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exit;
    }
  }

  /**
   * Streams one part from the store into `tar --extract` in `dir`, hashing every byte. When tar stops early (zstd
   * found a damaged frame) the rest is still read and hashed, so a damaged part is always reported as
   * SNAPSHOT_CORRUPT and a tar failure on intact data (a full disk) as what it is.
   */
  private async extractPart(prefix: string, part: SnapshotPart, dir: string): Promise<void> {
    const body = await this.store.get(part.key);
    const args = [
      '--extract',
      '--file=-',
      `--directory=${dir}`,
      ...XATTR_ARGS,
      '--numeric-owner',
      '--same-owner',
      '--same-permissions',
      '--use-compress-program=zstd -q',
    ];
    const child = spawn(this.tar, args, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const exit = exitOf(child);
    let tarReading = true;
    void exit.then(() => {
      tarReading = false;
    });
    // EPIPE when tar exits before the end: what tar said is in its exit status.
    child.stdin!.on('error', () => {
      tarReading = false;
    });
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of body) {
        const bytes = chunk as Buffer;
        hash.update(bytes);
        size += bytes.length;
        if (tarReading && !child.stdin!.write(bytes)) {
          await Promise.race([once(child.stdin!, 'drain').catch(() => {}), exit]);
        }
      }
    } catch (err) {
      child.kill('SIGKILL');
      await exit;
      throw new DenError(
        'OBJECT_STORE_FAILED',
        `reading snapshot part ${part.key} from ${this.store.location} failed: ${(err as Error).message}`,
      );
    }
    child.stdin!.end();
    const result = await exit;
    const sha256 = hash.digest('hex');
    if (size !== part.size || sha256 !== part.sha256) {
      throw corrupt(
        prefix,
        `part ${part.key} has ${size} bytes with SHA-256 ${sha256}, its manifest says ${part.size} bytes with ${part.sha256}`,
        { key: part.key, expectedSha256: part.sha256, actualSha256: sha256, expectedSize: part.size, actualSize: size },
      );
    }
    if (result.code !== 0) {
      throw new DenError(
        'INTERNAL',
        `tar could not extract snapshot part ${part.key} into ${dir}: ${result.stderr.trim() || describeExit(result)}`,
      );
    }
  }
}

export interface ExitResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export function exitOf(child: ChildProcess): Promise<ExitResult> {
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += chunk.toString();
  });
  return new Promise((resolve) => {
    child.once('error', (err) => resolve({ code: -1, signal: null, stderr: err.message }));
    child.once('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/**
 * tar's stdout, which fails at the end unless tar exited 0: an archive tar could not complete must not be stored.
 * Exit status 1 (a file changed while it was read) fails too, since the snapshot would not be consistent.
 */
async function* archiveOutput(stdout: Readable, exit: Promise<ExitResult>, dir: string): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of stdout) {
    bytes += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  const result = await exit;
  // Even an empty directory makes a non-empty archive (its header and end blocks): no bytes means lost output.
  if (result.code === 0 && bytes > 0) return;
  if (result.code === 0) throw new DenError('INTERNAL', `tar archived ${dir} but its output was lost`);
  const hint = result.code === 1 ? '; files changed while archiving: stop or pause the sandbox first' : '';
  throw new DenError(
    'INTERNAL',
    `tar could not archive ${dir}: ${result.stderr.trim() || describeExit(result)}${hint}`,
  );
}

function describeExit(result: ExitResult): string {
  return result.signal ? `killed by ${result.signal}` : `exit status ${result.code}`;
}

function checkSnapshotPrefix(prefix: string): string {
  return checkKey(prefix.replace(/\/+$/, ''));
}

function manifestKey(prefix: string): string {
  return `${prefix}/manifest.json`;
}

function parseManifest(text: string, prefix: string): SnapshotManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(prefix, `its manifest is not JSON (${(err as Error).message})`);
  }
  const m = value as Partial<SnapshotManifest>;
  if (!m || typeof m !== 'object' || m.format !== SNAPSHOT_FORMAT || !Array.isArray(m.parts)) {
    throw corrupt(prefix, `its manifest is not a ${SNAPSHOT_FORMAT} manifest`);
  }
  for (const part of m.parts) {
    const ok =
      part &&
      typeof part.name === 'string' &&
      typeof part.key === 'string' &&
      part.key.startsWith(`${prefix}/`) &&
      part.encoding === 'tar+zstd' &&
      Number.isSafeInteger(part.size) &&
      /^[0-9a-f]{64}$/.test(part.sha256) &&
      (part.name === 'upper' || EXTRA_NAME.test(part.name.replace(/^extra\//, '')));
    if (!ok) throw corrupt(prefix, `its manifest has a malformed part ${JSON.stringify(part)}`);
  }
  return { ...m, prefix } as SnapshotManifest;
}

function corrupt(prefix: string, what: string, details?: Record<string, unknown>): DenError {
  return new DenError(
    'SNAPSHOT_CORRUPT',
    `snapshot "${prefix}" is corrupt: ${what}; nothing was restored, take a new snapshot`,
    details,
  );
}

async function requireDirectory(path: string, what: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new DenError('FILE_NOT_FOUND', `${what} ${path} does not exist`);
  if (!info.isDirectory()) throw new DenError('NOT_A_DIRECTORY', `${what} ${path} is not a directory`);
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

function now(): string {
  return new Date().toISOString();
}
