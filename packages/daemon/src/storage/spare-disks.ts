import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { command } from '../command.js';

/**
 * Formats `file` as a sandbox disk of `diskMB`: made under a temporary name and renamed, so a crash during mkfs
 * never leaves a half-made disk under the final name.
 */
export async function formatDisk(file: string, diskMB: number): Promise<void> {
  const tmp = `${file}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, '', { mode: 0o600 });
  await truncate(tmp, diskMB * 1024 * 1024);
  // -m 0: no blocks reserved for root, so root and users inside hit ENOSPC at the same size.
  // lazy_itable_init/lazy_journal_init: the file is sparse, so the inode tables and journal already read as
  // zeros; skipping their zeroing keeps creation at ~10 ms and the file small (mount uses noinit_itable).
  await command('mkfs.ext4', [
    '-q',
    '-F',
    '-m',
    '0',
    '-E',
    'lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0',
    '-L',
    'den-disk',
    tmp,
  ]);
  await rename(tmp, file);
}

/**
 * A few formatted, unused disks of one size (the default), made ahead in the background: a create then renames one
 * into place instead of running mkfs (~12 ms with its spawn from the daemon, the longest step of a runc create's
 * preparation). Each is a sparse file of ~2 MB on the host. The directory must be on the sandboxes' filesystem.
 */
export class SpareDisks {
  private filling = false;

  constructor(
    private readonly dir: string,
    readonly sizeMB: number,
    private readonly count: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Moves a spare disk of `sizeMB` to `file`; false when there is none (the caller formats one). */
  async take(sizeMB: number, file: string): Promise<boolean> {
    if (sizeMB !== this.sizeMB || this.count === 0) return false;
    for (const name of await this.spares()) {
      try {
        await rename(join(this.dir, name), file);
        this.refill();
        return true;
      } catch {
        // taken by a concurrent create: try the next one
      }
    }
    this.refill();
    return false;
  }

  /** Tops the spares up to `count` in the background, one at a time; half-made ones of a crash are removed first. */
  refill(): void {
    if (this.filling || this.count === 0) return;
    this.filling = true;
    void (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      for (const name of await readdir(this.dir)) {
        if (name.endsWith('.tmp')) await rm(join(this.dir, name), { force: true });
      }
      while ((await this.spares()).length < this.count) {
        await formatDisk(join(this.dir, `${this.sizeMB}-${randomBytes(6).toString('hex')}.ext4`), this.sizeMB);
      }
    })()
      .catch(this.onError)
      .finally(() => {
        this.filling = false;
      });
  }

  private async spares(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.startsWith(`${this.sizeMB}-`) && n.endsWith('.ext4'));
  }
}
