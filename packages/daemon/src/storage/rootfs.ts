import { chmod, chown, mkdir, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { DenError } from '@den/shared';
import { command } from '../command.js';
import { pathExists } from '../fs-util.js';
import type { DenPaths } from '../paths.js';
import type { RootfsManager } from '../services/ports.js';
import { formatDisk, type SpareDisks } from './spare-disks.js';

/**
 * A sandbox's root filesystem (RUNTIME-NOTES: "a real per-sandbox disk limit"):
 *
 *   disk.ext4   sparse file of diskMB, ext4, loop-mounted at disk/ — the sandbox's persistent layer and its size limit
 *   disk/upper  overlay upper dir: everything the sandbox writes (ENOSPC inside when the disk is full)
 *   disk/work   overlay work dir (same filesystem as upper, as overlayfs requires)
 *   rootfs/     overlay of the image's layers (read-only lower dirs, shared by all sandboxes) under upper
 *
 * Every step checks /proc/self/mountinfo first, so each call can be repeated after a crash between any two steps.
 */
export class LoopOverlayRootfs implements RootfsManager {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly paths: DenPaths,
    /** formatted disks made ahead (storage/spare-disks.ts); without them every new disk is formatted on the spot */
    private readonly spareDisks?: SpareDisks,
  ) {}

  ensureDisk(sandboxId: string, diskMB: number): Promise<void> {
    return this.locked(sandboxId, async () => {
      const p = this.paths.sandbox(sandboxId);
      if (await pathExists(p.diskFile)) return;
      if (!Number.isInteger(diskMB) || diskMB < 16) {
        throw new DenError('INVALID_ARGUMENT', `diskMB must be an integer of at least 16, got ${diskMB}`);
      }
      await mkdir(p.dir, { recursive: true, mode: 0o700 });
      if (await this.spareDisks?.take(diskMB, p.diskFile)) return;
      await formatDisk(p.diskFile, diskMB);
    });
  }

  mount(sandboxId: string, layerDirs: string[]): Promise<string> {
    return this.locked(sandboxId, async () => {
      const p = this.paths.sandbox(sandboxId);
      if (layerDirs.length === 0) throw new DenError('INVALID_ARGUMENT', 'an image needs at least one layer');
      if (!(await pathExists(p.diskFile))) {
        throw new DenError('INTERNAL', `sandbox ${sandboxId} has no disk (${p.diskFile}); ensureDisk first`);
      }
      for (const l of layerDirs) {
        if (l.includes(':') || l.includes(','))
          throw new DenError('INVALID_ARGUMENT', `layer path ${l} contains : or ,`);
        if (!(await pathExists(l))) throw new DenError('INTERNAL', `image layer ${l} is missing from the store`);
      }
      let mounts = await mountPoints();
      if (!mounts.has(p.diskMount)) {
        await mountDiskFile(p.diskFile, p.diskMount);
        mounts = await mountPoints();
      }
      const upper = join(p.diskMount, 'upper');
      const work = join(p.diskMount, 'work');
      if (!(await pathExists(upper))) {
        // The merged root directory takes its owner and mode from upper/: copy them from the image's top layer
        // (root 0755 for Debian) so / inside looks like the image's. Directories below (e.g. /home/user, owned by
        // uid 1000 in the image) keep their owners when overlayfs copies them up.
        const top = await stat(layerDirs[0] as string);
        await mkdir(`${upper}.tmp`, { recursive: true });
        await chown(`${upper}.tmp`, top.uid, top.gid);
        await chmod(`${upper}.tmp`, top.mode & 0o7777);
        await rename(`${upper}.tmp`, upper);
      }
      await mkdir(work, { recursive: true, mode: 0o700 });
      if (!mounts.has(p.rootfs)) {
        await mkdir(p.rootfs, { recursive: true, mode: 0o755 });
        const options = `lowerdir=${layerDirs.join(':')},upperdir=${upper},workdir=${work}`;
        await command('mount', ['-t', 'overlay', 'overlay', '-o', options, p.rootfs]);
      }
      return p.rootfs;
    });
  }

  /**
   * Mounts only the sandbox's disk (no overlay) and returns its overlay upper dir path, which may not exist yet (a
   * new disk). For snapshots and images of a sandbox that is stopped or paused, and for restoring a snapshot into a
   * new sandbox's disk before its first mount. `unmount` undoes it.
   */
  mountDisk(sandboxId: string): Promise<string> {
    return this.locked(sandboxId, async () => {
      const p = this.paths.sandbox(sandboxId);
      if (!(await pathExists(p.diskFile))) {
        throw new DenError('INTERNAL', `sandbox ${sandboxId} has no disk (${p.diskFile}); ensureDisk first`);
      }
      if (!(await mountPoints()).has(p.diskMount)) {
        await mountDiskFile(p.diskFile, p.diskMount);
      }
      return join(p.diskMount, 'upper');
    });
  }

  unmount(sandboxId: string): Promise<void> {
    return this.locked(sandboxId, () => this.unmountLocked(sandboxId));
  }

  private async unmountLocked(sandboxId: string): Promise<void> {
    const p = this.paths.sandbox(sandboxId);
    let mounts = await mountPoints();
    // Anything mounted below the rootfs first (deepest first), then the overlay, then the disk.
    const below = [...mounts.keys()].filter((m) => m.startsWith(p.rootfs + sep)).sort((a, b) => b.length - a.length);
    for (const m of below) await umount(m);
    if (mounts.has(p.rootfs)) await umount(p.rootfs);
    mounts = await mountPoints();
    if (mounts.has(p.diskMount)) await umount(p.diskMount);
    // `-o loop` devices autoclear on unmount; a loop device can still be left attached when the process was killed
    // between attaching and mounting, or when a mount was made without autoclear.
    await detachLoops(p.diskFile);
  }

  destroy(sandboxId: string): Promise<void> {
    return this.locked(sandboxId, async () => {
      const p = this.paths.sandbox(sandboxId);
      await this.unmountLocked(sandboxId);
      // Never delete recursively through a mount: that would delete the mounted filesystem's contents.
      const still = [...(await mountPoints()).keys()].filter((m) => m === p.dir || m.startsWith(p.dir + sep));
      if (still.length > 0) {
        throw new DenError('INTERNAL', `sandbox ${sandboxId} still has mounts (${still.join(', ')}); not removing it`);
      }
      await rm(p.dir, { recursive: true, force: true });
    });
  }

  async listOnDisk(): Promise<string[]> {
    try {
      const entries = await readdir(this.paths.sandboxesDir, { withFileTypes: true });
      return entries
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
    } catch {
      return [];
    }
  }

  /** Bytes used and total on the sandbox's disk, when it is mounted (statfs of disk/). */
  async diskUsage(sandboxId: string): Promise<{ usedBytes: number; totalBytes: number } | undefined> {
    const p = this.paths.sandbox(sandboxId);
    if (!(await mountPoints()).has(p.diskMount)) return undefined;
    const s = await statfs(p.diskMount);
    return { usedBytes: (s.blocks - s.bfree) * s.bsize, totalBytes: s.blocks * s.bsize };
  }

  /** Serialises operations on one sandbox within this process (the services serialise across requests too). */
  private locked<T>(sandboxId: string, fn: () => Promise<T>): Promise<T> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(sandboxId)) {
      return Promise.reject(new DenError('INVALID_ARGUMENT', `invalid sandbox id ${JSON.stringify(sandboxId)}`));
    }
    const prev = this.locks.get(sandboxId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(sandboxId, tail);
    void tail.then(() => {
      if (this.locks.get(sandboxId) === tail) this.locks.delete(sandboxId);
    });
    return next;
  }
}

/** Mount points of this process's mount namespace, from /proc/self/mountinfo (field 5, octal escapes decoded). */
export async function mountPoints(): Promise<Map<string, { fstype: string; source: string }>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const result = new Map<string, { fstype: string; source: string }>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ');
    const fields = (pre ?? '').split(' ');
    const mountPoint = fields[4];
    if (!mountPoint) continue;
    const [fstype = '', source = ''] = (post ?? '').split(' ');
    result.set(unescapeMountinfo(mountPoint), { fstype, source: unescapeMountinfo(source) });
  }
  return result;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

async function mountDiskFile(file: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o700 });
  // `-o loop` sets up the loop device with autoclear: unmounting detaches it.
  // discard: space freed inside is given back to the host (holes punched in the sparse file).
  await command('mount', ['-t', 'ext4', '-o', 'loop,noatime,discard,noinit_itable', file, target]);
}

async function umount(target: string): Promise<void> {
  try {
    await command('umount', [target]);
  } catch (err) {
    // already gone (a concurrent unmount, or it was only in a stale mountinfo read)
    if (!(await mountPoints()).has(target)) return;
    throw err;
  }
}

/** How long an unmount waits for the kernel to let go of the disk's loop device. */
const LOOP_RELEASE_MS = 3_000;

/**
 * Detaches every loop device backed by `file`, and returns once none is left: the kernel clears an autoclear loop
 * device asynchronously after the unmount (seen taking tens of ms under load), and a caller that then checks the
 * machine, removes the file or mounts it again must not find the old device still attached.
 */
export async function detachLoops(file: string): Promise<void> {
  if (!(await pathExists(file))) return;
  const deadline = performance.now() + LOOP_RELEASE_MS;
  for (;;) {
    const devices = await loopsOf(file);
    if (devices.length === 0) return;
    for (const dev of devices) {
      await command('losetup', ['--detach', dev]).catch(async (err) => {
        // gone meanwhile (autoclear), or still clearing: looked at again below
        if (performance.now() > deadline) throw err;
      });
    }
    if (performance.now() > deadline) {
      throw new DenError('INTERNAL', `loop device ${devices.join(', ')} of ${file} is still attached after unmount`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function loopsOf(file: string): Promise<string[]> {
  const out = await command('losetup', ['--associated', file, '--noheadings', '--output', 'NAME']).catch(() => '');
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}
