import { type FSWatcher, type Stats, watch } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import type { ServerHttp2Stream } from 'node:http2';
import { checkSandboxPath, DenError, errnoToCode } from './contract.js';
import { WATCH_CONTENT_TYPE, type WatchEvent } from './protocol.js';

/** Directories one recursive watch may cover: each is one inotify watch, a limited kernel resource. */
export const MAX_WATCHED_DIRS = 8192;

/**
 * How long a vanished path waits for its inode to reappear elsewhere. inotify reports a move as a pair of events
 * (moved-from, moved-to), which fs.watch delivers as two "rename" events without the cookie that links them; an
 * inode seen again within this window makes the pair one `rename` (of the old name) plus a `create` (of the new),
 * as fsnotify reports it, rather than `remove` + `create`.
 */
const MOVE_PAIRING_MS = 100;

interface Known {
  ino: number;
  mode: number;
  mtimeMs: number;
  size: number;
  dir: boolean;
}

/**
 * Reports changes under a directory as create/write/remove/rename/chmod events with names relative to it.
 *
 * Built on fs.watch (inotify), one non-recursive watch per directory: Node's own `recursive` option on Linux
 * polls in some Node 20 releases, and a watch per directory also lets new subdirectories join as they appear.
 * fs.watch only says "rename" (something appeared or vanished) or "change" (content or attributes), so each event
 * is classified against the last stat seen for that path: a new path is `create`, a vanished one `remove` (or
 * `rename` when its inode reappears, see MOVE_PAIRING_MS), a changed mtime or size `write`, a changed mode `chmod`.
 * Changes closer together than one stat are coalesced: an entry created, chmod-ed and moved away within a
 * millisecond is reported as create then remove, not as each step fsnotify would see.
 * Works in gVisor (its VFS implements inotify for changes made inside the sandbox) and under runc.
 */
export class DirectoryWatch {
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly known = new Map<string, Known>();
  private readonly vanished = new Map<number, { name: string; timer: NodeJS.Timeout }>();
  private closed = false;
  /** Events are classified one at a time, in arrival order: each compares against the state the last one left. */
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    readonly root: string,
    private readonly recursive: boolean,
    private readonly emit: (event: WatchEvent) => void,
    private readonly fail: (err: DenError) => void,
  ) {}

  /** Starts watching; resolves once every watch is in place, so changes made afterwards are reported. */
  static async start(
    root: string,
    options: { recursive: boolean },
    emit: (event: WatchEvent) => void,
    fail: (err: DenError) => void,
  ): Promise<DirectoryWatch> {
    let st: Stats;
    try {
      st = await stat(root);
    } catch (err) {
      throw watchError(err, root);
    }
    if (!st.isDirectory()) throw new DenError('NOT_A_DIRECTORY', `${root} is not a directory; watch its parent`);
    const w = new DirectoryWatch(root, options.recursive, emit, fail);
    try {
      await w.addDirectory(root);
    } catch (err) {
      w.close();
      throw err;
    }
    return w;
  }

  close(): void {
    this.closed = true;
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
    for (const { timer } of this.vanished.values()) clearTimeout(timer);
    this.vanished.clear();
  }

  private async addDirectory(dir: string): Promise<void> {
    if (this.closed || this.watchers.has(dir)) return;
    if (this.watchers.size >= MAX_WATCHED_DIRS) {
      throw new DenError(
        'RESOURCE_EXHAUSTED',
        `watching ${this.root} needs more than ${MAX_WATCHED_DIRS} directory watches; watch a smaller tree or without recursive`,
      );
    }
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: false, encoding: 'utf8' });
    } catch (err) {
      throw watchError(err, dir);
    }
    this.watchers.set(dir, watcher);
    watcher.on('change', (kind, filename) => {
      if (!filename) return;
      this.queue = this.queue
        .then(() => this.onChange(dir, String(filename), kind === 'change'))
        .catch((err: unknown) => this.fail(watchError(err, dir)));
    });
    watcher.on('error', (err) => {
      // The watched directory itself went away: its removal is reported by its parent's watch (or, for the root,
      // ends the watch below).
      watcher.close();
      this.watchers.delete(dir);
      if (dir === this.root && !this.closed) this.fail(watchError(err, dir));
    });
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (dir === this.root) throw watchError(err, dir);
      return; // removed while being added
    }
    await Promise.all(
      names.map(async (name) => {
        const path = join(dir, name);
        const st = await lstat(path).catch(() => undefined);
        if (!st) return;
        this.known.set(path, snapshot(st));
        if (this.recursive && st.isDirectory()) await this.addDirectory(path);
      }),
    );
  }

  private async onChange(dir: string, filename: string, contentChange: boolean): Promise<void> {
    if (this.closed) return;
    const path = join(dir, filename);
    const name = path.slice(this.root === '/' ? 1 : this.root.length + 1);
    const before = this.known.get(path);
    const st = await lstat(path).catch(() => undefined);
    if (this.closed) return;
    if (!st) {
      // A content or attribute change of something already gone: its "rename" event, next, reports the removal.
      if (contentChange) return;
      if (!before) {
        // inotify reports the removal of the watched directory itself with the directory's own name.
        if (dir === this.root && !(await lstat(this.root).catch(() => undefined)) && !this.closed) {
          this.fail(new DenError('FILE_NOT_FOUND', `the watched directory ${this.root} was removed`));
        }
        // Created and gone again before it could be looked at: report the creation now and leave a placeholder
        // so the removal's own event (the next one for this name) is reported as a remove.
        this.emit({ type: 'create', name });
        this.known.set(path, { ino: -1, mode: 0, mtimeMs: 0, size: 0, dir: false });
        return;
      }
      if (before.ino === -1) {
        this.known.delete(path);
        this.emit({ type: 'remove', name });
        return;
      }
      this.known.delete(path);
      this.forgetDirectory(path);
      // Held briefly: if the inode shows up under another name, this was a move.
      const timer = setTimeout(() => {
        this.vanished.delete(before.ino);
        this.emit({ type: 'remove', name });
      }, MOVE_PAIRING_MS);
      this.vanished.set(before.ino, { name, timer });
      return;
    }
    const now = snapshot(st);
    this.known.set(path, now);
    if (!before || before.ino !== now.ino) {
      const moved = this.vanished.get(now.ino);
      if (moved) {
        clearTimeout(moved.timer);
        this.vanished.delete(now.ino);
        this.emit({ type: 'rename', name: moved.name });
      }
      this.emit({ type: 'create', name });
      if (this.recursive && now.dir) {
        await this.addDirectory(path).catch((err: DenError) => this.fail(err));
      }
      return;
    }
    if (!contentChange) {
      // "rename" for a path that still has the same inode: it was replaced by itself (e.g. touch of a link); skip.
      return;
    }
    // One stat may show the effect of several changes (a write and a chmod close together arrive as two "change"
    // events, and the first one's stat already sees both), so each difference is reported; the second event then
    // finds nothing new and reports nothing.
    if (before.mtimeMs !== now.mtimeMs || before.size !== now.size) this.emit({ type: 'write', name });
    if (before.mode !== now.mode) this.emit({ type: 'chmod', name });
  }

  /** Drops watches of a vanished directory and everything known below it. */
  private forgetDirectory(path: string): void {
    const prefix = `${path}/`;
    for (const [dir, watcher] of this.watchers) {
      if (dir === path || dir.startsWith(prefix)) {
        watcher.close();
        this.watchers.delete(dir);
      }
    }
    for (const known of this.known.keys()) if (known.startsWith(prefix)) this.known.delete(known);
  }
}

function snapshot(st: Stats): Known {
  return { ino: st.ino, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, size: st.size, dir: st.isDirectory() };
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

function watchError(err: unknown, path: string): DenError {
  if (err instanceof DenError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC' || e.code === 'EMFILE') {
    return new DenError(
      'RESOURCE_EXHAUSTED',
      `no inotify watch left for ${path} (${e.code}); stop other watches or watch a smaller tree`,
    );
  }
  const code = errnoToCode(e.code);
  return new DenError(code, `cannot watch ${path}: ${e.message}`);
}

/**
 * `GET /files/watch?path=&recursive=`: the response headers go out once the watch is in place, then one JSON
 * WatchEvent per line until the client resets the stream (or the watched directory goes away: an ERROR line).
 */
export async function watchRoute(stream: ServerHttp2Stream, query: URLSearchParams): Promise<void> {
  const path = checkSandboxPath(query.get('path') ?? undefined);
  const recursive = query.get('recursive') === 'true';
  const write = (line: unknown): void => {
    if (!stream.destroyed && !stream.writableEnded) stream.write(`${JSON.stringify(line)}\n`);
  };
  const w = await DirectoryWatch.start(path, { recursive }, write, (err) => {
    write({ type: 'error', error: err.toJSON() });
    stream.end();
  });
  if (stream.destroyed || stream.closed) {
    w.close();
    return;
  }
  stream.once('close', () => w.close());
  stream.respond({ ':status': 200, 'content-type': WATCH_CONTENT_TYPE });
  // The request has no body; reading it lets the stream close fully when the client resets it.
  stream.resume();
}
