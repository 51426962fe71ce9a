import { DenError, type Image } from '@den/shared';
import { KeyedMutex } from './keyed-mutex.js';
import type { ImageCatalog } from './ports.js';
import type { SandboxService } from './sandbox-service.js';

/** The image every sandbox starts from unless told otherwise; the install step builds it. */
const DEFAULT_IMAGE = 'base';

/**
 * Images made from sandboxes (Velda's `image create --from-instance`, Docker's commit): the sandbox's files become
 * the top layer of a new image on its own image's layers. The sandbox keeps running (it is held still while its
 * files are copied: see SandboxService.holdStill).
 */
export class ImageService {
  /** one create per image name at a time: the name check and the manifest write are not one step */
  private readonly names = new KeyedMutex();

  constructor(
    private readonly images: ImageCatalog,
    private readonly sandboxes: SandboxService,
  ) {}

  list(): Promise<Image[]> {
    return this.images.list();
  }

  createFromSandbox(name: string, ref: string): Promise<Image> {
    return this.names.run(name, async () => {
      // Checked before the sandbox is held still: a taken name must not cost the sandbox a checkpoint.
      if ((await this.images.list()).some((i) => i.name === name)) {
        throw new DenError('IMAGE_EXISTS', `an image named "${name}" already exists: choose another name`);
      }
      return this.sandboxes.holdStill(ref, async ({ record, upperDir }) => {
        const base = await this.images.get(record.image);
        return this.images.create(name, base, upperDir, { fromSandbox: record.id });
      });
    });
  }

  async remove(name: string): Promise<void> {
    await this.images.get(name);
    if (name === DEFAULT_IMAGE) {
      throw new DenError('INVALID_ARGUMENT', `"${DEFAULT_IMAGE}" is the default image and cannot be removed`);
    }
    const users = await this.sandboxes.usingImage(name);
    if (users.length > 0) {
      const list = users.slice(0, 5).join(', ');
      throw new DenError('IMAGE_IN_USE', `sandboxes use image "${name}" (${list}): remove them first`, {
        sandboxes: users,
      });
    }
    await this.images.remove(name);
  }
}
