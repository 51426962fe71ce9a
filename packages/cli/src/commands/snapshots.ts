import { DenClient } from '@den/sdk';
import { formatAge, formatBytes, json, listing } from '../output.js';
import type {
  Context,
  ImageCreateArgs,
  ImageRemoveArgs,
  JsonArgs,
  SnapshotCreateArgs,
  SnapshotRemoveArgs,
} from '../program.js';
import { Spinner } from '../progress.js';

/** `den snapshot create REF [--name N]`: prints the snapshot's id (or JSON); a spinner while it is stored. */
export async function snapshotCreate(ctx: Context, args: SnapshotCreateArgs): Promise<number> {
  const spinner = new Spinner(ctx.stderr, `snapshotting ${args.ref}`).start();
  try {
    const snap = await new DenClient({ url: ctx.config.url }).createSnapshot(
      args.ref,
      args.name !== undefined ? { name: args.name } : {},
    );
    spinner.stop();
    ctx.stdout.write(args.json ? json(snap) : `${snap.id}\n`);
    if (!args.json && snap.memoryNotSaved) ctx.stderr.write(`files only: ${snap.memoryNotSaved}\n`);
    return 0;
  } finally {
    spinner.stop();
  }
}

/** `den snapshot ls`. */
export async function snapshotList(ctx: Context, args: JsonArgs): Promise<number> {
  const snapshots = await new DenClient({ url: ctx.config.url }).listSnapshots();
  ctx.stdout.write(
    listing(args.json, snapshots, ['ID', 'NAME', 'SANDBOX', 'IMAGE', 'RUNTIME', 'MEMORY', 'SIZE', 'CREATED'], (s) => [
      s.id,
      s.name ?? '-',
      s.sandboxName ?? s.sandboxId,
      s.image,
      s.runtime,
      s.memory ? 'yes' : 'no',
      formatBytes(s.sizeBytes),
      formatAge(s.createdAt),
    ]),
  );
  return 0;
}

/** `den snapshot rm REF...`: prints each removed reference. */
export async function snapshotRemove(ctx: Context, args: SnapshotRemoveArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  for (const ref of args.refs) {
    await client.deleteSnapshot(ref);
    ctx.stdout.write(`${ref}\n`);
  }
  return 0;
}

/** `den image create --from-instance REF NAME`: prints the image name (or JSON). */
export async function imageCreate(ctx: Context, args: ImageCreateArgs): Promise<number> {
  const spinner = new Spinner(ctx.stderr, `committing ${args.fromSandbox} into image ${args.name}`).start();
  try {
    const image = await new DenClient({ url: ctx.config.url }).createImage({
      name: args.name,
      fromSandbox: args.fromSandbox,
    });
    spinner.stop();
    ctx.stdout.write(args.json ? json(image) : `${image.name}\n`);
    return 0;
  } finally {
    spinner.stop();
  }
}

/** `den image rm NAME...`. */
export async function imageRemove(ctx: Context, args: ImageRemoveArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  for (const name of args.names) {
    await client.deleteImage(name);
    ctx.stdout.write(`${name}\n`);
  }
  return 0;
}
