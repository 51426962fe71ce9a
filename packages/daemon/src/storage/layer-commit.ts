import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DenError } from '@den/shared';
import { pathExists } from '../fs-util.js';
import { exitOf, XATTR_ARGS } from './snapshot-archive.js';

/**
 * Copies a sandbox's overlay upper dir into the image store as a new read-only layer and returns its digest
 * (`sha256:<hex>` of the tar stream the copy went through, names sorted). Whiteouts (0/0 character devices), opaque
 * directories and redirects (`trusted.overlay.*` xattrs), owners, modes and file capabilities are kept, so the layer
 * works as an overlayfs lower layer on top of the source image's layers: deleted files stay deleted.
 *
 * The copy is made in a temporary directory beside the layers and renamed into place, so a crash never leaves a
 * half-written layer under a digest. The same content twice yields one layer.
 */
export async function commitLayer(upperDir: string, layersDir: string): Promise<string> {
  const tmp = join(layersDir, `.tmp-${randomBytes(8).toString('hex')}`);
  await mkdir(tmp, { recursive: true, mode: 0o755 });
  try {
    const env = { ...process.env, LC_ALL: 'C' };
    const create = spawn(
      'tar',
      [
        '--create',
        '--file=-',
        `--directory=${upperDir}`,
        '--format=posix',
        '--pax-option=delete=atime,delete=ctime',
        '--sort=name',
        ...XATTR_ARGS,
        '--numeric-owner',
        '--sparse',
        '--one-file-system',
        '.',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env },
    );
    const extract = spawn(
      'tar',
      [
        '--extract',
        '--file=-',
        `--directory=${tmp}`,
        ...XATTR_ARGS,
        '--numeric-owner',
        '--same-owner',
        '--same-permissions',
      ],
      { stdio: ['pipe', 'ignore', 'pipe'], env },
    );
    const hash = createHash('sha256');
    create.stdout!.on('data', (chunk: Buffer) => hash.update(chunk));
    create.stdout!.pipe(extract.stdin!);
    extract.stdin!.on('error', () => create.kill('SIGKILL'));
    const [created, extracted] = await Promise.all([exitOf(create), exitOf(extract)]);
    if (created.code !== 0 || extracted.code !== 0) {
      const why = (created.code !== 0 ? created.stderr : extracted.stderr).trim().split('\n').slice(-3).join('; ');
      throw new DenError('INTERNAL', `copying ${upperDir} into a new image layer failed: ${why}`);
    }
    const hex = hash.digest('hex');
    const target = join(layersDir, 'sha256', hex);
    if (await pathExists(target)) {
      await rm(tmp, { recursive: true, force: true });
    } else {
      await mkdir(join(layersDir, 'sha256'), { recursive: true });
      await rename(tmp, target);
    }
    return `sha256:${hex}`;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
