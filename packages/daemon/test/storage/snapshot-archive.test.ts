/**
 * Snapshot archives of a real overlayfs upper dir (whiteouts, opaque dirs, hard links, sparse files, special modes,
 * uid 1000) round-tripped through both object stores, restored by a second store instance (another daemon sharing
 * the store), and a damaged part refused with the target untouched. Needs root (overlay mounts, device nodes,
 * trusted.* xattrs) and GNU tar, zstd and python3 (reads xattrs to compare trees); skips with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
  link,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  symlink,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { DenError } from '@den/shared';
import type { ObjectStore } from '../../src/services/ports.js';
import { LocalObjectStore, S3ObjectStore } from '../../src/storage/object-store/index.js';
import { mountPoints } from '../../src/storage/rootfs.js';
import { SnapshotArchive } from '../../src/storage/snapshot-archive.js';
import { type S3TestServer, startS3Server } from './object-store-s3-server.js';

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (overlay mounts, device nodes, trusted.* xattrs)';
  for (const tool of ['tar', 'zstd', 'python3', 'mount', 'mkfifo']) {
    if (spawnSync('which', [tool]).status !== 0) return `needs ${tool} (run the install step)`;
  }
  return undefined;
}

/** Two instances of one store: the second plays another daemon (another machine) sharing it. */
interface StoreSubject {
  name: string;
  open(): Promise<{ writer: ObjectStore; reader: ObjectStore }>;
  teardown(): Promise<void>;
}

const subjects: StoreSubject[] = [
  (() => {
    let dir: string;
    return {
      name: 'local directory',
      async open() {
        dir = await mkdtemp(join(tmpdir(), 'den-snap-objects-'));
        return { writer: await LocalObjectStore.open(dir), reader: await LocalObjectStore.open(dir) };
      },
      async teardown() {
        await rm(dir, { recursive: true, force: true });
      },
    };
  })(),
  (() => {
    let server: S3TestServer;
    return {
      name: 'S3 (s3rver)',
      async open() {
        server = await startS3Server();
        return {
          writer: new S3ObjectStore(server.options('den-snapshots', 'den')),
          reader: new S3ObjectStore(server.options('den-snapshots', 'den')),
        };
      },
      async teardown() {
        await server?.stop();
      },
    };
  })(),
];

for (const subject of subjects) {
  describe(`SnapshotArchive on ${subject.name}`, { skip: skipReason() ?? false, concurrency: false }, () => {
    let base: string;
    let writer: ObjectStore;
    let reader: ObjectStore;
    let upper: string;
    let lower: string;
    let memoryDir: string;

    before(async () => {
      base = await mkdtemp(join(tmpdir(), 'den-snap-'));
      ({ writer, reader } = await subject.open());
      lower = join(base, 'lower');
      upper = join(base, 'upper');
      await makeLowerLayer(lower);
      await mkdir(upper);
      await withOverlay(base, lower, upper, makeChangesThroughOverlay);
      memoryDir = join(base, 'checkpoint');
      await makeCheckpointLikeDir(memoryDir);
    });

    after(async () => {
      await writer?.close();
      await reader?.close();
      await subject.teardown();
      const left = [...(await mountPoints()).keys()].filter((m) => m.startsWith(base));
      assert.deepEqual(left, [], 'test left mounts behind');
      await rm(base, { recursive: true, force: true });
    });

    it('the upper dir holds what overlayfs made: a whiteout, an opaque dir, hard links, a sparse file', () => {
      const tree = describeTree(upper);
      assert.deepEqual(tree['gone.txt']?.rdev, [0, 0]);
      assert.equal(tree['gone.txt']?.type, 'char');
      assert.equal(tree.olddir?.xattrs['trusted.overlay.opaque'], '79'); // "y"
      assert.deepEqual(tree['hard-a']?.links, ['hard-a', 'sub/hard-b']);
      assert.equal(tree['sparse.bin']?.sparse, true);
    });

    it('round-trips the upper dir and an extra dir, restored by another store instance', async (t) => {
      const archive = new SnapshotArchive(writer);
      const startMs = Date.now();
      const manifest = await archive.write({
        prefix: 'snapshots/snap-rt',
        upperDir: upper,
        extras: [{ name: 'memory', dir: memoryDir }],
        source: { sandboxId: 'sbxtest', image: 'base', runtime: 'runsc' },
      });
      const writeMs = Date.now() - startMs;
      assert.equal(manifest.format, 'den-snapshot/1');
      assert.deepEqual(
        manifest.parts.map((p) => [p.name, p.key]),
        [
          ['upper', 'snapshots/snap-rt/upper.tar.zst'],
          ['extra/memory', 'snapshots/snap-rt/extra/memory.tar.zst'],
        ],
      );
      assert.equal(manifest.source.sandboxId, 'sbxtest');
      assert.ok(manifest.source.hostname);
      for (const part of manifest.parts) {
        assert.equal((await writer.head(part.key))?.size, part.size);
        assert.match(part.sha256, /^[0-9a-f]{64}$/);
      }
      assert.deepEqual(
        (await writer.list('snapshots/snap-rt/')).map((o) => o.key),
        [
          'snapshots/snap-rt/extra/memory.tar.zst',
          'snapshots/snap-rt/manifest.json',
          'snapshots/snap-rt/upper.tar.zst',
        ],
      );

      // Another daemon: a separate store instance, restoring by prefix alone.
      const other = new SnapshotArchive(reader);
      const restored = join(base, 'restored', 'upper');
      const extras = join(base, 'restored', 'extras');
      const restoreStartMs = Date.now();
      const read = await other.restore('snapshots/snap-rt', { upperDir: restored, extrasDir: extras });
      t.diagnostic(
        `write ${writeMs} ms, restore ${Date.now() - restoreStartMs} ms, parts ` +
          manifest.parts.map((p) => `${p.name} ${p.size} B`).join(', '),
      );
      assert.deepEqual(read, manifest);
      assert.deepEqual(describeTree(restored), describeTree(upper));
      assert.deepEqual(describeTree(join(extras, 'memory')), describeTree(memoryDir));
      assert.deepEqual(
        (await readdir(join(base, 'restored'))).sort(),
        ['extras', 'upper'],
        'no staging dirs left behind',
      );

      // The restored upper dir works as an overlay upper dir again.
      await withOverlay(base, lower, restored, async (merged) => {
        const names = (await readdir(merged)).sort();
        assert.ok(!names.includes('gone.txt'), 'the whiteout hides the deleted lower file');
        assert.ok(names.includes('keep.txt'));
        assert.deepEqual(await readdir(join(merged, 'olddir')), ['new.txt'], 'the opaque dir hides the lower dir');
        assert.equal(await readFile(join(merged, 'keep.txt'), 'utf8'), 'kept from the lower layer\n');
        assert.equal(await readFile(join(merged, 'changed.txt'), 'utf8'), 'changed in the upper layer\n');
      });

      await rm(join(base, 'restored'), { recursive: true, force: true });
    });

    it('restores only the filesystem when no extras dir is given, and refuses an existing target', async () => {
      const archive = new SnapshotArchive(writer);
      await archive.write({
        prefix: 'snapshots/snap-fs',
        upperDir: upper,
        extras: [{ name: 'memory', dir: memoryDir }],
      });
      const target = join(base, 'fs-only', 'upper');
      await archive.restore('snapshots/snap-fs', { upperDir: target });
      assert.deepEqual(await readdir(join(base, 'fs-only')), ['upper']);
      await assert.rejects(archive.restore('snapshots/snap-fs', { upperDir: target }), { code: 'FILE_EXISTS' });
      await writeFile(join(target, 'stale'), 'replaced soon');
      await archive.restore('snapshots/snap-fs', { upperDir: target, replace: true });
      assert.deepEqual(describeTree(target), describeTree(upper));
      await assert.rejects(archive.write({ prefix: 'snapshots/snap-fs', upperDir: upper }), { code: 'FILE_EXISTS' });
      assert.equal(await archive.delete('snapshots/snap-fs'), 3);
      await assert.rejects(archive.restore('snapshots/snap-fs', { upperDir: target }), { code: 'OBJECT_NOT_FOUND' });
      await rm(join(base, 'fs-only'), { recursive: true, force: true });
    });

    it('refuses a part whose bytes were flipped with SNAPSHOT_CORRUPT, leaving the target untouched', async () => {
      const archive = new SnapshotArchive(writer);
      const manifest = await archive.write({
        prefix: 'snapshots/snap-bad',
        upperDir: upper,
        extras: [{ name: 'memory', dir: memoryDir }],
      });
      const target = join(base, 'bad', 'upper');
      await mkdir(target, { recursive: true });
      await writeFile(join(target, 'precious.txt'), 'must survive a failed restore\n');
      const before = describeTree(target);

      for (const part of manifest.parts) {
        // Flip bytes in the stored object, as bit rot or a broken copy would.
        const original = await readAll(await writer.get(part.key));
        const damaged = Buffer.from(original);
        for (const at of [Math.floor(damaged.length / 2), damaged.length - 10]) damaged[at]! ^= 0xff;
        await writer.put(part.key, Readable.from([damaged]));

        await assert.rejects(
          new SnapshotArchive(reader).restore('snapshots/snap-bad', {
            upperDir: target,
            extrasDir: join(base, 'bad', 'extras'),
            replace: true,
          }),
          (err: unknown) => {
            assert.ok(err instanceof DenError);
            assert.equal(err.code, 'SNAPSHOT_CORRUPT', err.message);
            assert.match(err.message, new RegExp(part.key.replace(/[./]/g, '\\$&')));
            assert.equal(err.details?.expectedSha256, part.sha256);
            return true;
          },
        );
        assert.deepEqual(describeTree(target), before, 'the target is untouched');
        assert.deepEqual((await readdir(join(base, 'bad'))).sort(), ['upper'], 'no staging dirs or extras left');
        await writer.put(part.key, Readable.from([original]));
      }
      await archive.delete('snapshots/snap-bad');
      await rm(join(base, 'bad'), { recursive: true, force: true });
    });

    it('stores nothing when the source does not exist', async () => {
      const archive = new SnapshotArchive(writer);
      await assert.rejects(archive.write({ prefix: 'snapshots/snap-missing', upperDir: join(base, 'no-such-dir') }), {
        code: 'FILE_NOT_FOUND',
      });
      assert.deepEqual(await writer.list('snapshots/snap-missing'), []);
    });
  });
}

async function makeLowerLayer(lower: string): Promise<void> {
  await mkdir(join(lower, 'olddir'), { recursive: true });
  await writeFile(join(lower, 'keep.txt'), 'kept from the lower layer\n');
  await writeFile(join(lower, 'gone.txt'), 'deleted through the overlay\n');
  await writeFile(join(lower, 'changed.txt'), 'lower version\n');
  await writeFile(join(lower, 'olddir', 'a.txt'), 'hidden by the opaque dir\n');
  await writeFile(join(lower, 'olddir', 'b.txt'), 'hidden too\n');
}

/** What a sandbox does to its filesystem, done through a real overlay so overlayfs writes the upper dir. */
async function makeChangesThroughOverlay(merged: string): Promise<void> {
  await unlink(join(merged, 'gone.txt')); // whiteout: character device 0/0
  await rm(join(merged, 'olddir'), { recursive: true });
  await mkdir(join(merged, 'olddir')); // opaque: trusted.overlay.opaque=y
  await writeFile(join(merged, 'olddir', 'new.txt'), 'only file of the opaque dir\n');
  await writeFile(join(merged, 'changed.txt'), 'changed in the upper layer\n'); // copy-up

  await mkdir(join(merged, 'home', 'user'), { recursive: true });
  await writeFile(join(merged, 'home', 'user', 'notes.txt'), 'owned by uid 1000\n');
  await chown(join(merged, 'home', 'user'), 1000, 1000);
  await chown(join(merged, 'home', 'user', 'notes.txt'), 1000, 1000);
  await chmod(join(merged, 'home', 'user', 'notes.txt'), 0o600);

  await writeFile(join(merged, 'hard-a'), 'one inode, two names\n');
  await mkdir(join(merged, 'sub'));
  await link(join(merged, 'hard-a'), join(merged, 'sub', 'hard-b'));

  // 64 MiB with 4 KiB of data in the middle
  await truncate(await touch(join(merged, 'sparse.bin')), 64 * 1024 * 1024);
  const sparse = await open(join(merged, 'sparse.bin'), 'r+');
  await sparse.write(randomBytes(4096), 0, 4096, 32 * 1024 * 1024);
  await sparse.close();

  await writeFile(join(merged, 'setuid-tool'), '#!/bin/sh\n');
  await chmod(join(merged, 'setuid-tool'), 0o4755);
  await mkdir(join(merged, 'shared-tmp'));
  await chmod(join(merged, 'shared-tmp'), 0o1777);
  await symlink('home/user/notes.txt', join(merged, 'link-to-notes'));
  run('mkfifo', [join(merged, 'a-fifo')]);
  run('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.den.note", b"kept")', join(merged, 'keep.txt')]);
}

/** A stand-in for a runsc checkpoint image directory: a large incompressible file and a sparse one. */
async function makeCheckpointLikeDir(dir: string): Promise<void> {
  await mkdir(dir);
  await writeFile(join(dir, 'checkpoint.img'), randomBytes(6 * 1024 * 1024));
  await truncate(await touch(join(dir, 'pages.img')), 16 * 1024 * 1024);
}

async function touch(path: string): Promise<string> {
  await writeFile(path, '');
  return path;
}

async function withOverlay(
  base: string,
  lower: string,
  upper: string,
  use: (merged: string) => Promise<void>,
): Promise<void> {
  const work = await mkdtemp(join(base, 'work-'));
  const merged = await mkdtemp(join(base, 'merged-'));
  run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
  try {
    await use(merged);
  } finally {
    run('umount', [merged]);
    await rm(work, { recursive: true, force: true });
    await rm(merged, { recursive: true, force: true });
  }
}

function run(binary: string, args: string[]): void {
  const r = spawnSync(binary, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${binary} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

interface Entry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: string;
  rdev?: [number, number];
  target?: string;
  sha256?: string;
  sparse?: boolean;
  /** every name of a file with several hard links, sorted */
  links?: string[];
  /** hex values */
  xattrs: Record<string, string>;
}

/**
 * Everything a restore must preserve, for every path under `dir` (the root as '.'): type, mode bits, owner, size,
 * mtime in ns, device numbers, symlink target, content hash, sparseness, hard-link groups, xattrs. Node has no xattr
 * API, so python3 reads the tree.
 */
function describeTree(dir: string): Record<string, Entry> {
  const script = `
import hashlib, json, os, stat, sys
root = sys.argv[1]
out, inodes = {}, {}
for cur, dirs, files in os.walk(root):
    paths = [os.path.join(cur, n) for n in dirs + files]
    if cur == root:
        paths.insert(0, root)
    for path in paths:
        rel = os.path.relpath(path, root)
        st = os.lstat(path)
        kind = {stat.S_IFREG: 'file', stat.S_IFDIR: 'dir', stat.S_IFLNK: 'symlink', stat.S_IFCHR: 'char',
                stat.S_IFIFO: 'fifo', stat.S_IFBLK: 'block', stat.S_IFSOCK: 'socket'}[stat.S_IFMT(st.st_mode)]
        e = {'type': kind, 'mode': oct(stat.S_IMODE(st.st_mode)), 'uid': st.st_uid, 'gid': st.st_gid,
             'size': st.st_size if kind != 'dir' else 0, 'mtimeNs': str(st.st_mtime_ns), 'xattrs': {}}
        if kind in ('char', 'block'):
            e['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        if kind == 'symlink':
            e['target'] = os.readlink(path)
        if kind == 'file':
            with open(path, 'rb') as f:
                e['sha256'] = hashlib.sha256(f.read()).hexdigest()
            e['sparse'] = st.st_blocks * 512 < st.st_size // 2
            if st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
                e['_ino'] = st.st_ino
        if kind != 'symlink':
            for x in os.listxattr(path, follow_symlinks=False):
                if x.startswith(('trusted.', 'user.', 'security.capability')):
                    e['xattrs'][x] = os.getxattr(path, x, follow_symlinks=False).hex()
        out[rel] = e
for e in out.values():
    ino = e.pop('_ino', None)
    if ino is not None:
        e['links'] = sorted(inodes[ino])
print(json.dumps(out, sort_keys=True))
`;
  const r = spawnSync('python3', ['-c', script, dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`describing ${dir} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, Entry>;
}
