import { createWriteStream, type Stats } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { DenError, errnoToCode, type FileEntry, type FileType } from './contract.js';
import type { UserDirectory, UserInfo } from './users.js';

const MAX_LIST_DEPTH = 64;
let tempCounter = 0;

/**
 * File operations inside the sandbox. They run as the agent (root) and give new files and directories to the
 * requesting user, as E2B's envd does; paths arrive already checked by `checkSandboxPath`.
 */
export class FileService {
  constructor(private readonly users: UserDirectory) {}

  async stat(path: string): Promise<FileEntry> {
    try {
      return await this.entry(path, await lstat(path));
    } catch (err) {
      throw fileError(err, path);
    }
  }

  /** Entries under a directory, `depth` levels down (1 = its direct children), sorted by path. */
  async list(path: string, depth: number): Promise<FileEntry[]> {
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_LIST_DEPTH) {
      throw new DenError('INVALID_ARGUMENT', `depth must be a whole number from 1 to ${MAX_LIST_DEPTH}`);
    }
    let st: Stats;
    try {
      st = await stat(path);
    } catch (err) {
      throw fileError(err, path);
    }
    if (!st.isDirectory())
      throw new DenError('NOT_A_DIRECTORY', `${path} is not a directory; use stat for a single file`);
    const out: FileEntry[] = [];
    await this.walk(path, depth, out);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  private async walk(dir: string, depth: number, out: FileEntry[]): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      throw fileError(err, dir);
    }
    const entries = await Promise.all(
      names.map(async (name) => {
        const path = dir === '/' ? `/${name}` : `${dir}/${name}`;
        try {
          return await this.entry(path, await lstat(path));
        } catch {
          return undefined; // removed while listing
        }
      }),
    );
    const subdirs: string[] = [];
    for (const e of entries) {
      if (!e) continue;
      out.push(e);
      if (e.type === 'dir' && depth > 1) subdirs.push(e.path);
    }
    for (const sub of subdirs) {
      // A subdirectory we may not read is shown but not descended into.
      await this.walk(sub, depth - 1, out).catch(() => undefined);
    }
  }

  /** Opens a regular file for reading; the caller streams it and closes the handle. */
  async openRead(path: string): Promise<{ handle: FileHandle; size: number }> {
    try {
      const st = await stat(path);
      if (st.isDirectory()) throw new DenError('IS_A_DIRECTORY', `${path} is a directory; list it or give a file path`);
      if (!st.isFile())
        throw new DenError('INVALID_ARGUMENT', `${path} is not a regular file (a device, socket or pipe)`);
      const handle = await open(path, 'r');
      return { handle, size: (await handle.stat()).size };
    } catch (err) {
      throw fileError(err, path);
    }
  }

  /**
   * Streams `source` into a temporary file next to `path` and renames it into place, so readers never see a
   * partial file and a failed upload leaves the old content. Missing parent directories are created. An existing
   * file keeps its permission bits; the file belongs to `owner`.
   */
  async write(path: string, source: Readable, owner: UserInfo): Promise<FileEntry> {
    if (path === '/') throw new DenError('IS_A_DIRECTORY', '/ is a directory; give a file path');
    const dir = dirname(path);
    await this.makeParents(dir, owner, path);
    let mode = 0o644;
    try {
      const st = await stat(path);
      if (st.isDirectory()) throw new DenError('IS_A_DIRECTORY', `${path} is a directory; give a file path`);
      mode = st.mode & 0o7777;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError(err, path);
    }
    const temp = join(dir, `.${basename(path)}.den-${process.pid}-${++tempCounter}.tmp`);
    try {
      await copyToNewFile(source, temp, mode);
      await chmod(temp, mode);
      await chown(temp, owner.uid, owner.gid);
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw fileError(err, path);
    }
    return this.stat(path);
  }

  /** `mkdir -p`: an existing directory is fine; created directories belong to `owner`. */
  async makeDir(path: string, owner: UserInfo): Promise<FileEntry> {
    await this.makeParents(path, owner, path);
    return this.stat(path);
  }

  /** Renames (or copies then removes, across filesystems); missing parents of `to` are created. */
  async move(from: string, to: string, owner: UserInfo): Promise<FileEntry> {
    if (from === '/') throw new DenError('INVALID_ARGUMENT', 'from is /: the root cannot be moved');
    try {
      await lstat(from);
    } catch (err) {
      throw fileError(err, from);
    }
    await this.makeParents(dirname(to), owner, to);
    try {
      await rename(from, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw fileError(err, to);
      try {
        await cp(from, to, {
          recursive: true,
          preserveTimestamps: true,
          verbatimSymlinks: true,
          errorOnExist: true,
          force: false,
        });
        await rm(from, { recursive: true, force: true });
      } catch (copyErr) {
        throw fileError(copyErr, to);
      }
    }
    return this.stat(to);
  }

  /** Removes a file or a whole directory tree. */
  async remove(path: string): Promise<void> {
    if (path === '/') throw new DenError('INVALID_ARGUMENT', 'path is /: the root cannot be removed');
    try {
      await lstat(path);
      await rm(path, { recursive: true, force: true });
    } catch (err) {
      throw fileError(err, path);
    }
  }

  /** `mkdir -p dir`, giving every directory it creates to `owner`. `target` names the request in errors. */
  private async makeParents(dir: string, owner: UserInfo, target: string): Promise<void> {
    let first: string | undefined;
    try {
      first = await mkdir(dir, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && dir === target) {
        throw new DenError('FILE_EXISTS', `${dir} exists and is not a directory; remove it or pick another path`);
      }
      if (code === 'EEXIST' || code === 'ENOTDIR') {
        throw new DenError(
          'NOT_A_DIRECTORY',
          `a parent of ${target} is a file, not a directory; remove or rename it first`,
        );
      }
      throw fileError(err, dir);
    }
    if (first === undefined) return;
    let current = first;
    for (;;) {
      await chown(current, owner.uid, owner.gid).catch((err) => {
        throw fileError(err, current);
      });
      if (current === dir) break;
      const rest = dir.slice(current.length + 1);
      const next = rest.indexOf('/');
      current = `${current}/${next === -1 ? rest : rest.slice(0, next)}`;
    }
  }

  private async entry(path: string, st: Stats): Promise<FileEntry> {
    const entry: FileEntry = {
      name: path === '/' ? '/' : basename(path),
      path,
      type: fileType(st),
      size: st.size,
      mode: st.mode & 0o7777,
      owner: this.users.userName(st.uid),
      group: this.users.groupName(st.gid),
      modifiedAt: st.mtime.toISOString(),
    };
    if (entry.type === 'symlink') entry.symlinkTarget = await readlink(path).catch(() => '');
    return entry;
  }
}

function fileType(st: Stats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/**
 * Pipes `source` into a new file with backpressure. Unlike stream.pipeline it never destroys the source: the
 * source is the request stream, which must stay usable to send an error response (e.g. DISK_FULL).
 */
function copyToNewFile(source: Readable, path: string, mode: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(path, { flags: 'wx', mode, highWaterMark: 1024 * 1024 });
    let failure: unknown;
    const fail = (err: unknown): void => {
      if (failure) return;
      failure = err;
      source.unpipe(out);
      out.destroy();
    };
    const onSourceClose = (): void => {
      if (!source.readableEnded) fail(new DenError('INVALID_ARGUMENT', `the upload of ${path} was cancelled`));
    };
    out.once('error', fail);
    // 'close' comes last in every case, after the file was opened and closed, so the caller may remove it then.
    out.once('close', () => {
      source.off('close', onSourceClose);
      if (failure) reject(failure);
      else if (out.writableFinished) resolve();
      else reject(new Error(`writing ${path} was interrupted`));
    });
    source.once('close', onSourceClose);
    source.pipe(out);
  });
}

/** A DenError for a failed file operation, with a message that says what to do. */
export function fileError(err: unknown, path: string): DenError {
  if (err instanceof DenError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = errnoToCode(e.code);
  switch (code) {
    case 'FILE_NOT_FOUND':
      return new DenError(code, `no such file or directory in the sandbox: ${path}`);
    case 'FILE_EXISTS':
      return new DenError(
        code,
        e.code === 'ENOTEMPTY' ? `${path} is a directory that is not empty` : `${path} already exists; remove it first`,
      );
    case 'NOT_A_DIRECTORY':
      return new DenError(code, `a component of ${path} is not a directory`);
    case 'IS_A_DIRECTORY':
      return new DenError(code, `${path} is a directory; give a file path`);
    case 'PERMISSION_DENIED':
      return new DenError(
        code,
        `permission denied for ${path} (${e.code}): it may be on a read-only or protected mount`,
      );
    case 'DISK_FULL':
      return new DenError(
        code,
        `the sandbox's disk is full while writing ${path}; free space or create the sandbox with a larger --disk`,
      );
    case 'INVALID_ARGUMENT':
      return new DenError(code, `invalid path ${path} (${e.code}): ${e.message}`);
    default:
      return new DenError('INTERNAL', `file operation on ${path} failed: ${e?.message ?? String(err)}`);
  }
}
