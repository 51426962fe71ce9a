import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DenError, type Image } from '@den/shared';
import type { ImageCatalog } from '../services/ports.js';
import { commitLayer } from './layer-commit.js';

/**
 * Image manifests and layers in den's store:
 *
 *   <store>/images/<name>.json        {name, layers: ["sha256:<hex>", ...] (base first), config: {user, workdir, env},
 *                                      createdAt, ...}
 *   <store>/layers/sha256/<hex>/      one extracted layer, read-only once written
 */

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:([0-9a-f]{64})$/;

interface Manifest {
  name?: unknown;
  layers?: unknown;
  config?: { user?: unknown; workdir?: unknown; env?: unknown };
  createdAt?: unknown;
}

export class ImageStore implements ImageCatalog {
  constructor(readonly storeDir: string) {}

  /** The image called `name`; IMAGE_NOT_FOUND (naming the available images) when there is none. */
  async get(name: string): Promise<Image> {
    if (!NAME.test(name)) throw await this.notFound(name);
    let text: string;
    try {
      text = await readFile(join(this.storeDir, 'images', `${name}.json`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw await this.notFound(name);
      throw err;
    }
    return parseManifest(name, text);
  }

  /** Every image in the store, by name. Manifests that do not parse are skipped. */
  async list(): Promise<Image[]> {
    const images: Image[] = [];
    for (const name of await this.names()) {
      try {
        images.push(await this.get(name));
      } catch {
        // a manifest being written or a broken one; `get` reports it when asked for by name
      }
    }
    return images;
  }

  /**
   * A new image: `base`'s layers with the directory `upperDir` (a sandbox's overlay upper dir) as a new top layer,
   * and `base`'s user, workdir and env. IMAGE_EXISTS when the name is taken. The manifest is written last (under a
   * temporary name, then renamed), so a crash leaves no half-made image.
   */
  async create(name: string, base: Image, upperDir: string, origin: Record<string, string>): Promise<Image> {
    if (!NAME.test(name)) {
      throw new DenError('INVALID_ARGUMENT', `image name "${name}" is not valid: use letters, digits, ".", "_", "-"`);
    }
    const file = this.manifestFile(name);
    if (await this.exists(name)) {
      throw new DenError('IMAGE_EXISTS', `an image named "${name}" already exists: choose another name`);
    }
    const layer = await commitLayer(upperDir, join(this.storeDir, 'layers'));
    const manifest = {
      name,
      layers: [...base.layers, layer],
      config: { user: base.user, workdir: base.workdir, env: base.env },
      createdAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      parent: base.name,
      ...origin,
    };
    await writeFile(`${file}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
    return this.get(name);
  }

  /**
   * Removes an image and the layers no other image uses. The caller makes sure no sandbox uses it (their overlays
   * read its layers).
   */
  async remove(name: string): Promise<void> {
    const image = await this.get(name);
    await rm(this.manifestFile(name), { force: true });
    const used = new Set((await this.list()).flatMap((i) => i.layers));
    for (const layer of image.layers) {
      if (!used.has(layer)) await rm(this.layerDir(layer), { recursive: true, force: true });
    }
  }

  private manifestFile(name: string): string {
    return join(this.storeDir, 'images', `${name}.json`);
  }

  private async exists(name: string): Promise<boolean> {
    return (await this.names()).includes(name);
  }

  /** Host directory of an extracted layer. */
  layerDir(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m?.[1])
      throw new DenError('INVALID_ARGUMENT', `layer digest ${JSON.stringify(digest)} is not sha256:<64 hex>`);
    return join(this.storeDir, 'layers', 'sha256', m[1]);
  }

  /** The image's layer directories top first, the order overlayfs takes for `lowerdir`. */
  layerDirs(image: Image): string[] {
    return image.layers.map((d) => this.layerDir(d)).reverse();
  }

  private async names(): Promise<string[]> {
    try {
      return (await readdir(join(this.storeDir, 'images')))
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -'.json'.length))
        .filter((n) => NAME.test(n))
        .sort();
    } catch {
      return [];
    }
  }

  private async notFound(name: string): Promise<DenError> {
    const available = await this.names();
    const hint =
      available.length > 0 ? `available: ${available.join(', ')}` : 'the store has no images; run the install step';
    return new DenError('IMAGE_NOT_FOUND', `image ${JSON.stringify(name)} not found (${hint})`, { available });
  }
}

function parseManifest(name: string, text: string): Image {
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch {
    throw new DenError('INTERNAL', `image manifest ${name}.json is not JSON`);
  }
  const layers = m.layers;
  if (!Array.isArray(layers) || layers.length === 0 || !layers.every((l) => typeof l === 'string' && DIGEST.test(l))) {
    throw new DenError('INTERNAL', `image manifest ${name}.json has no valid "layers" (sha256 digests)`);
  }
  const cfg = m.config ?? {};
  const env = Array.isArray(cfg.env) ? cfg.env.filter((e): e is string => typeof e === 'string') : [];
  return {
    name: typeof m.name === 'string' ? m.name : name,
    layers: layers as string[],
    user: typeof cfg.user === 'string' ? cfg.user : 'root',
    workdir: typeof cfg.workdir === 'string' ? cfg.workdir : '/',
    env,
    createdAt: typeof m.createdAt === 'string' ? m.createdAt : '',
  };
}
