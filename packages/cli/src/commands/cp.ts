import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DenError, FileNotFoundError, Sandbox } from '@den/sdk';
import { baseName, type CpPlan, joinPath } from '../cp-path.js';
import { CliError, UsageError } from '../errors.js';
import type { Context } from '../program.js';
import { ProgressBar } from '../progress.js';

/** Transfers larger than this show a progress bar (on a terminal). */
export const PROGRESS_THRESHOLD_BYTES = 1024 * 1024;

/** `den cp SRC DST`: one file, streamed in either direction. */
export async function cp(ctx: Context, plan: CpPlan): Promise<number> {
  const sbx = await Sandbox.connect(plan.ref, { url: ctx.config.url });
  if (plan.direction === 'upload') await upload(ctx, sbx, plan.local, plan.remote);
  else await download(ctx, sbx, plan.remote, plan.local);
  return 0;
}

async function upload(ctx: Context, sbx: Sandbox, local: string, remote: string): Promise<void> {
  let source: Readable;
  let size: number | undefined;
  let name: string | undefined;
  if (local === '-') {
    source = process.stdin;
  } else {
    const st = await localStat(local);
    if (!st) throw new CliError(`no such file: ${local}`);
    if (st.isDirectory()) {
      throw new CliError(
        `${local} is a directory and den cp copies single files: archive it, e.g. ` +
          `tar czf - ${local} | den cp - ${sbx.name ?? sbx.id}:/tmp/${baseName(local) || 'dir'}.tgz`,
      );
    }
    size = st.size;
    name = baseName(local);
    source = createReadStream(local);
  }

  let target = remote;
  if (remote.endsWith('/') || (await remoteIsDir(sbx, remote))) {
    if (!name) throw new UsageError(`${remote} is a directory: give the file name to write stdin to`);
    target = joinPath(remote, name);
  }

  const bar = progressFor(ctx, name ?? baseName(target), size);
  const body = bar ? Readable.from(counted(source, bar)) : source;
  try {
    await sbx.files.write(target, body);
  } catch (err) {
    bar?.clear();
    throw err;
  }
  bar?.finish();
}

async function download(ctx: Context, sbx: Sandbox, remote: string, local: string): Promise<void> {
  const entry = await sbx.files.stat(remote);
  if (entry.type === 'dir') {
    throw new CliError(
      `${remote} is a directory and den cp copies single files: archive it, e.g. ` +
        `den exec ${sbx.name ?? sbx.id} -- tar czf - -C ${remote} . > ${baseName(remote) || 'root'}.tgz`,
    );
  }
  const stream = await sbx.files.read(remote, { format: 'stream' });
  const bar = progressFor(ctx, baseName(remote), entry.size);
  const chunks = bar ? counted(stream, bar) : stream;

  if (local === '-') {
    // stdout is not ended (it cannot be closed); write with backpressure.
    for await (const chunk of chunks) {
      if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
    }
    bar?.finish();
    return;
  }
  let target = local;
  if (local.endsWith('/') || (await localStat(local))?.isDirectory()) target = join(local, baseName(remote));
  try {
    await pipeline(chunks, createWriteStream(target));
  } catch (err) {
    bar?.clear();
    // A partial file must not pass for a complete copy.
    await rm(target, { force: true });
    if (err instanceof DenError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
      throw new CliError(`cannot write ${target}: ${(err as Error).message}`);
    }
    throw new CliError(`the download of ${remote} broke off: ${(err as Error).message}`);
  }
  bar?.finish();
}

function progressFor(ctx: Context, name: string, size: number | undefined): ProgressBar | undefined {
  if (size === undefined || size <= PROGRESS_THRESHOLD_BYTES || !ctx.stderr.isTTY) return undefined;
  const label = name.length > 30 ? `${name.slice(0, 29)}…` : name;
  return new ProgressBar(ctx.stderr, label, size);
}

async function* counted(source: AsyncIterable<Uint8Array>, bar: ProgressBar): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    bar.tick(chunk.byteLength);
    yield chunk;
  }
}

async function remoteIsDir(sbx: Sandbox, path: string): Promise<boolean> {
  try {
    return (await sbx.files.stat(path)).type === 'dir';
  } catch (err) {
    if (err instanceof FileNotFoundError) return false;
    throw err;
  }
}

async function localStat(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
