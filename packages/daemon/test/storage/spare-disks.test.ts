/** SpareDisks with the real mkfs.ext4: disks made ahead, taken by rename, topped up, crash leftovers removed. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SpareDisks } from '../../src/storage/spare-disks.js';

const hasMkfs = spawnSync('mkfs.ext4', ['-V']).status === 0;

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SpareDisks', { skip: hasMkfs ? false : 'needs mkfs.ext4 (e2fsprogs)' }, () => {
  let dir: string;
  const errors: unknown[] = [];
  const sparesIn = async (d: string) => (await readdir(d)).filter((n) => n.endsWith('.ext4'));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'den-spares-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps `count` formatted disks; a take of that size renames one into place and tops up again', async () => {
    const spares = new SpareDisks(join(dir, 'spare'), 64, 2, (err) => errors.push(err));
    await mkdir(join(dir, 'spare'));
    // a half-made disk of a crash
    await writeFile(join(dir, 'spare', '64-dead.ext4.tmp'), 'x');
    spares.refill();
    await until(async () => (await sparesIn(join(dir, 'spare'))).length === 2, 'two spare disks');
    assert.ok(!(await readdir(join(dir, 'spare'))).includes('64-dead.ext4.tmp'), 'the crash leftover is removed');

    const target = join(dir, 'disk.ext4');
    assert.equal(await spares.take(64, target), true);
    assert.equal((await stat(target)).size, 64 * 1024 * 1024);
    const blkid = spawnSync('blkid', ['-o', 'value', '-s', 'TYPE', target], { encoding: 'utf8' });
    assert.equal(blkid.stdout.trim(), 'ext4');
    await until(async () => (await sparesIn(join(dir, 'spare'))).length === 2, 'the spare disks topped up');
    assert.deepEqual(errors, []);
  });

  it('another size, or none kept, is not served: the caller formats its own disk', async () => {
    const spares = new SpareDisks(join(dir, 'spare2'), 64, 1, (err) => errors.push(err));
    spares.refill();
    await until(async () => (await sparesIn(join(dir, 'spare2')).catch(() => [])).length === 1, 'one spare disk');
    assert.equal(await spares.take(128, join(dir, 'other.ext4')), false);
    const none = new SpareDisks(join(dir, 'spare3'), 64, 0, (err) => errors.push(err));
    none.refill();
    assert.equal(await none.take(64, join(dir, 'none.ext4')), false);
    assert.deepEqual(await readdir(dir).then((n) => n.filter((x) => x === 'spare3')), []);
  });
});
