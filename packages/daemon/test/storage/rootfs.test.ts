/**
 * LoopOverlayRootfs against the real kernel: loop devices, ext4, overlayfs. Needs root and the base image in the
 * store (the image's layer is the overlay's lower dir); skips with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newSandboxId } from '@den/shared';
import { type DenPaths, denPaths } from '../../src/paths.js';
import { ImageStore } from '../../src/storage/image-store.js';
import { LoopOverlayRootfs, mountPoints } from '../../src/storage/rootfs.js';

const STORE = process.env.DEN_STORE || '/var/lib/den/store';

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (loop devices and mounts)';
  if (!existsSync(join(STORE, 'images', 'base.json'))) return `no base image in ${STORE}: run the install step`;
  return undefined;
}

function loopsOf(file: string): string[] {
  const r = spawnSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l.includes(file))
    .map((l) => l.trim());
}

describe('LoopOverlayRootfs', { skip: skipReason() ?? false, concurrency: false }, () => {
  let home: string;
  let paths: DenPaths;
  let rootfs: LoopOverlayRootfs;
  let layers: string[];
  const ids: string[] = [];

  const newId = () => {
    const id = newSandboxId();
    ids.push(id);
    return id;
  };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'den-rootfs-'));
    paths = denPaths(home, STORE);
    rootfs = new LoopOverlayRootfs(paths);
    const images = new ImageStore(STORE);
    layers = images.layerDirs(await images.get('base'));
  });

  after(async () => {
    for (const id of ids) await rootfs.destroy(id);
    const left = [...(await mountPoints()).keys()].filter((m) => m.startsWith(home));
    assert.deepEqual(left, []);
    assert.deepEqual(loopsOf(home), []);
    await rm(home, { recursive: true, force: true });
  });

  it('creates a sparse ext4 disk once, in about 10 ms', async (t) => {
    const id = newId();
    const p = paths.sandbox(id);
    const t0 = performance.now();
    await rootfs.ensureDisk(id, 1024);
    t.diagnostic(`ensureDisk 1024 MB: ${(performance.now() - t0).toFixed(1)} ms`);
    const st = await stat(p.diskFile);
    assert.equal(st.size, 1024 * 2 ** 20);
    assert.ok(st.blocks * 512 < 16 * 2 ** 20, `disk file allocates ${st.blocks * 512} bytes`);
    const probe = spawnSync('blkid', ['-o', 'value', '-s', 'TYPE', p.diskFile], { encoding: 'utf8' });
    assert.equal(probe.stdout.trim(), 'ext4');
    await rootfs.ensureDisk(id, 2048); // exists: left as it is
    assert.equal((await stat(p.diskFile)).mtimeMs, st.mtimeMs);
  });

  it('mounts disk and overlay idempotently; writes land in upper/', async () => {
    const id = newId();
    const p = paths.sandbox(id);
    await rootfs.ensureDisk(id, 128);
    const dir = await rootfs.mount(id, layers);
    assert.equal(dir, p.rootfs);
    assert.equal(await rootfs.mount(id, layers), dir);
    const mounts = await mountPoints();
    assert.equal(mounts.get(p.rootfs)?.fstype, 'overlay');
    assert.equal(mounts.get(p.diskMount)?.fstype, 'ext4');
    const count = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((l) => l.includes(` ${p.rootfs} `));
    assert.equal(count.length, 1, 'mounted twice');
    assert.match(await readFile(join(dir, 'etc/debian_version'), 'utf8'), /^\d+/);
    await writeFile(join(dir, 'etc/den-written'), 'x');
    assert.equal(await readFile(join(p.diskMount, 'upper/etc/den-written'), 'utf8'), 'x');
    // the merged root looks like the image's root; /home/user keeps uid 1000
    const [root, lower] = [await stat(dir), await stat(layers[0] as string)];
    assert.equal(root.mode, lower.mode);
    assert.equal(root.uid, lower.uid);
    assert.equal((await stat(join(dir, 'home/user'))).uid, 1000);
  });

  it('unmount detaches everything and can be repeated; the data persists', async () => {
    const id = newId();
    const p = paths.sandbox(id);
    await rootfs.ensureDisk(id, 64);
    const dir = await rootfs.mount(id, layers);
    await writeFile(join(dir, 'root/keep'), 'kept');
    await rootfs.unmount(id);
    await rootfs.unmount(id);
    const mounts = await mountPoints();
    assert.equal(mounts.has(p.rootfs), false);
    assert.equal(mounts.has(p.diskMount), false);
    assert.deepEqual(loopsOf(p.diskFile), []);
    await rootfs.mount(id, layers);
    assert.equal(await readFile(join(dir, 'root/keep'), 'utf8'), 'kept');
  });

  it('recovers from a crash between any two steps', async () => {
    const id = newId();
    const p = paths.sandbox(id);
    // killed during mkfs: a temporary file is left, the disk does not exist yet
    await rootfs.ensureDisk(id, 64);
    await rm(p.diskFile);
    await writeFile(`${p.diskFile}.tmp`, 'partial');
    await rootfs.ensureDisk(id, 64);
    assert.equal(existsSync(`${p.diskFile}.tmp`), false);
    // killed after the disk mount, before the overlay
    const dir = await rootfs.mount(id, layers);
    spawnSync('umount', [dir]);
    assert.equal(await rootfs.mount(id, layers), dir);
    assert.ok((await mountPoints()).has(dir));
    // killed after attaching a loop device, before mounting it
    await rootfs.unmount(id);
    const attached = spawnSync('losetup', ['--find', '--show', p.diskFile], { encoding: 'utf8' });
    assert.equal(attached.status, 0, attached.stderr);
    assert.equal(loopsOf(p.diskFile).length, 1);
    await rootfs.unmount(id);
    assert.deepEqual(loopsOf(p.diskFile), []);
  });

  it('enforces the disk size: ENOSPC at the limit, writes elsewhere unaffected', async () => {
    const id = newId();
    await rootfs.ensureDisk(id, 32);
    const dir = await rootfs.mount(id, layers);
    const fh = await open(join(dir, 'fill'), 'w');
    const chunk = Buffer.alloc(1 << 20, 1);
    let error: NodeJS.ErrnoException | undefined;
    let written = 0;
    try {
      for (let i = 0; i < 64; i++) {
        await fh.write(chunk);
        written++;
      }
      await fh.sync();
    } catch (err) {
      error = err as NodeJS.ErrnoException;
    } finally {
      await fh.close().catch(() => undefined);
    }
    assert.equal(error?.code, 'ENOSPC');
    assert.ok(written >= 24 && written < 32, `${written} MiB written into a 32 MiB disk`);
    await writeFile(join(home, 'outside'), chunk);
    await rm(join(dir, 'fill'));
    await writeFile(join(dir, 'after'), chunk);
  });

  it('destroy removes everything, never deletes through a busy mount, and can be repeated', async () => {
    const id = newId();
    const p = paths.sandbox(id);
    await rootfs.ensureDisk(id, 64);
    const dir = await rootfs.mount(id, layers);
    assert.deepEqual(
      (await rootfs.listOnDisk()).filter((d) => d === id),
      [id],
    );
    const busy = await open(join(dir, 'etc/hostname'), 'r');
    await assert.rejects(rootfs.destroy(id));
    assert.equal(await readFile(join(dir, 'etc/debian_version'), 'utf8').then(Boolean), true, 'destroy deleted data');
    await busy.close();
    await rootfs.destroy(id);
    await rootfs.destroy(id);
    assert.equal(existsSync(p.dir), false);
    assert.deepEqual(loopsOf(p.diskFile), []);
    assert.equal((await rootfs.listOnDisk()).includes(id), false);
  });

  it('rejects ids that are not path-safe', async () => {
    await assert.rejects(rootfs.ensureDisk('../escape', 64), /invalid sandbox id/);
  });
});
