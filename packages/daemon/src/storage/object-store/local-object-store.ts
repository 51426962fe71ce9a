import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DenError } from '@den/shared';
import type { ObjectInfo, ObjectStore } from '../../services/ports.js';
import { checkKey, checkPrefix } from './keys.js';
import { Sha256Stream, watchSource } from './sha256-stream.js';

/** Temporary files older than this are from a writer that died (a crash or kill between create and rename). */
const STALE_PARTIAL_MS = 24 * 60 * 60 * 1000;

/**
 * The object store in a local directory: `<dir>/data/<key>` holds the objects as plain files, `<dir>/partial/` the
 * uploads in progress. A put writes a temporary file, fsyncs it, renames it over the key and fsyncs the directory,
 * so readers see the old object or the whole new one, never a part, and a crash leaves at worst a stray file in
 * partial/ (removed by `open` once it is a day old). Both folders are on the same filesystem, which rename needs.
 *
 * A directory cannot be a file at the same time, so unlike S3 this store cannot hold both `a` and `a/b`; such a
 * put is refused with INVALID_ARGUMENT.
 */
export class LocalObjectStore implements ObjectStore {
  readonly location: string;
  private readonly dataDir: string;
  private readonly partialDir: string;

  private constructor(readonly dir: string) {
    this.location = `file://${dir}`;
    this.dataDir = join(dir, 'data');
    this.partialDir = join(dir, 'partial');
  }

  /** Creates the directories when missing and removes partial files left by writers that died. */
  static async open(dir: string): Promise<LocalObjectStore> {
    const store = new LocalObjectStore(dir);
    await mkdir(store.dataDir, { recursive: true });
    await mkdir(store.partialDir, { recursive: true });
    const now = Date.now();
    for (const name of await readdir(store.partialDir)) {
      const path = join(store.partialDir, name);
      const info = await stat(path).catch(() => undefined);
      if (info && now - info.mtimeMs > STALE_PARTIAL_MS) await unlink(path).catch(() => {});
    }
    return store;
  }

  async put(
    key: string,
    body: Readable,
    opts: { contentLength?: number } = {},
  ): Promise<{ size: number; sha256: string }> {
    const target = this.pathOf(checkKey(key));
    const partial = join(this.partialDir, `${randomBytes(12).toString('hex')}.partial`);
    const file = await open(partial, 'wx', 0o644);
    const hasher = new Sha256Stream({ expectedBytes: opts.contentLength });
    const source = watchSource(body);
    try {
      try {
        // Written through the handle (not a WriteStream, whose open reference would keep close() waiting) so the
        // same handle can be fsynced before it is closed.
        await pipeline(body, hasher, async (source: AsyncIterable<Buffer>) => {
          for await (const chunk of source) await writeFully(file, chunk);
        });
        // The data must be on disk before the rename makes it visible, or a crash could expose an empty file.
        await file.sync();
      } finally {
        await file.close();
      }
      await this.moveIntoPlace(partial, target, key);
    } catch (err) {
      await unlink(partial).catch(() => {});
      // The caller's own stream failing is the caller's error: pass it on unchanged.
      throw err instanceof DenError || err === source.error ? err : storeFailure('put', key, err);
    }
    return hasher.result();
  }

  async get(key: string): Promise<Readable> {
    const path = this.pathOf(checkKey(key));
    let file: FileHandle;
    try {
      file = await open(path, 'r');
    } catch (err) {
      throw isMissing(err) ? notFound(key, this.location) : storeFailure('get', key, err);
    }
    // open() succeeds on a directory (the parent of other keys), which is no object.
    const info = await file.stat();
    if (!info.isFile()) {
      await file.close();
      throw notFound(key, this.location);
    }
    return file.createReadStream();
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(checkKey(key));
    try {
      const info = await stat(path);
      return info.isFile() ? { key, size: info.size, lastModified: info.mtime } : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw storeFailure('head', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, { allowEmpty: true });
    // Only the directory named by the prefix's complete segments can hold matches.
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const found: ObjectInfo[] = [];
    await this.walk(join(this.dataDir, base), prefix, found);
    // S3 lists in UTF-8 byte order; sorting Buffers gives the same order for any key.
    return found.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(checkKey(key));
    try {
      await unlink(path);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return;
      throw storeFailure('delete', key, err);
    }
    await this.pruneEmptyParents(dirname(path));
  }

  async deletePrefix(prefix: string): Promise<number> {
    checkPrefix(prefix, { allowEmpty: false });
    const objects = await this.list(prefix);
    for (const object of objects) await this.delete(object.key);
    return objects.length;
  }

  async close(): Promise<void> {}

  private pathOf(key: string): string {
    return join(this.dataDir, ...key.split('/'));
  }

  private async moveIntoPlace(partial: string, target: string, key: string): Promise<void> {
    // A concurrent delete may prune the parent directory between mkdir and rename (ENOENT): make it again.
    for (let attempt = 0; ; attempt++) {
      try {
        await mkdir(dirname(target), { recursive: true });
        await rename(partial, target);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' && attempt < 3) continue;
        if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST') {
          throw new DenError(
            'INVALID_ARGUMENT',
            `object key "${key}" collides with another key in ${this.location}: a local object store cannot hold ` +
              'both "a" and "a/b"; choose keys where no key is a folder of another',
          );
        }
        throw err;
      }
    }
    // The rename is durable only once the directory entry is on disk.
    const parent = await open(dirname(target), 'r');
    try {
      await parent.sync();
    } finally {
      await parent.close();
    }
  }

  /** Removes directories left empty by a delete, up to data/, so deleted prefixes leave no folders behind. */
  private async pruneEmptyParents(dir: string): Promise<void> {
    while (dir !== this.dataDir && dir.startsWith(this.dataDir + sep)) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (ENOTEMPTY), or already removed by a concurrent delete
      }
      dir = dirname(dir);
    }
  }

  private async walk(dir: string, prefix: string, found: ObjectInfo[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw storeFailure('list', prefix, err);
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      const key = relative(this.dataDir, path).split(sep).join('/');
      if (entry.isDirectory()) {
        // Descend only where a match can be: the folder is inside the prefix or the prefix is inside the folder.
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) await this.walk(path, prefix, found);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const info = await stat(path).catch(() => undefined); // deleted since readdir: not listed
        if (info) found.push({ key, size: info.size, lastModified: info.mtime });
      }
    }
  }
}

async function writeFully(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let at = 0; at < chunk.length; ) {
    const { bytesWritten } = await file.write(chunk, at);
    at += bytesWritten;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export function notFound(key: string, location: string): DenError {
  return new DenError('OBJECT_NOT_FOUND', `no object "${key}" in ${location}`, { key });
}

function storeFailure(operation: string, key: string, err: unknown): DenError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new DenError('DISK_FULL', `object store ${operation} "${key}": the disk is full; free space and retry`);
  }
  return new DenError('OBJECT_STORE_FAILED', `object store ${operation} "${key}" failed: ${(err as Error).message}`);
}
