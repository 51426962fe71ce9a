import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DenError } from '@den/shared';
import { ImageStore } from '../../src/storage/image-store.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;

describe('ImageStore', () => {
  let store: string;
  let images: ImageStore;

  before(async () => {
    store = await mkdtemp(join(tmpdir(), 'den-images-'));
    await mkdir(join(store, 'images'));
    const manifest = (name: string, layers: string[]) => ({
      name,
      layers,
      config: { user: 'user', workdir: '/home/user', env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8'] },
      createdAt: '2026-01-01T00:00:00Z',
    });
    await writeFile(join(store, 'images', 'base.json'), JSON.stringify(manifest('base', [A])));
    await writeFile(join(store, 'images', 'node.json'), JSON.stringify(manifest('node', [A, B])));
    await writeFile(join(store, 'images', 'broken.json'), '{not json');
    images = new ImageStore(store);
  });

  after(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it('reads a manifest into an Image', async () => {
    assert.deepEqual(await images.get('base'), {
      name: 'base',
      layers: [A],
      user: 'user',
      workdir: '/home/user',
      env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8'],
      createdAt: '2026-01-01T00:00:00Z',
    });
  });

  it('gives layer directories top first, the overlay lowerdir order', async () => {
    const node = await images.get('node');
    assert.deepEqual(images.layerDirs(node), [
      join(store, 'layers/sha256', 'b'.repeat(64)),
      join(store, 'layers/sha256', 'a'.repeat(64)),
    ]);
    assert.throws(
      () => images.layerDir('sha256:../../etc'),
      (e: DenError) => e.code === 'INVALID_ARGUMENT',
    );
  });

  it('lists the images that parse', async () => {
    assert.deepEqual(
      (await images.list()).map((i) => i.name),
      ['base', 'node'],
    );
  });

  it('names the available images when one is unknown', async () => {
    for (const name of ['nope', '../images/base', '']) {
      await assert.rejects(images.get(name), (err: DenError) => {
        assert.equal(err.code, 'IMAGE_NOT_FOUND');
        assert.match(err.message, /available: base, broken, node/);
        return true;
      });
    }
  });

  it('reports a broken manifest as INTERNAL', async () => {
    await assert.rejects(images.get('broken'), (err: DenError) => err.code === 'INTERNAL');
  });

  it('reads the installed base image', {
    skip: existsSync('/var/lib/den/store/images/base.json') ? false : 'no installed base image',
  }, async () => {
    const real = new ImageStore('/var/lib/den/store');
    const base = await real.get('base');
    assert.equal(base.user, 'user');
    for (const dir of real.layerDirs(base)) assert.ok(existsSync(join(dir, 'etc/os-release')), dir);
  });
});
