import { Readable } from 'node:stream';
import { checkSandboxPath, DenError, type FileEntry } from '@den/shared';
import type { DenClient } from './client.js';
import type { RequestOptions } from './config.js';
import { FileNotFoundError, typed } from './errors.js';
import { readAll } from './http-body.js';

/** Options shared by file operations. */
export interface FileOptions extends RequestOptions {
  /** user (name or uid) the operation runs as inside the sandbox; defaults to the image's user */
  user?: string;
}

/** What `files.read` returns for each format. */
export interface ReadFormats {
  text: string;
  bytes: Uint8Array;
  stream: ReadableStream<Uint8Array>;
}
export type ReadFormat = keyof ReadFormats;

/** Data `files.write` accepts: text (written as UTF-8), bytes, a Node stream or a web ReadableStream. */
export type WriteData = string | Uint8Array | Readable | ReadableStream<Uint8Array>;

/**
 * The sandbox's filesystem: `sandbox.files`. Paths are absolute paths inside the sandbox.
 *
 * @example
 * ```ts
 * await sbx.files.write('/home/user/hello.txt', 'hi\n');
 * const text = await sbx.files.read('/home/user/hello.txt'); // 'hi\n'
 * ```
 */
export class Files {
  /** @internal */
  constructor(
    private readonly client: DenClient,
    private readonly ref: string,
  ) {}

  /**
   * Writes a file, creating or replacing it (parent directories are created). Streams and large buffers are sent
   * as one streamed PUT, never held whole in memory by the SDK; a streamed upload has no request timeout.
   *
   * @example
   * ```ts
   * import { createReadStream } from 'node:fs';
   * await sbx.files.write('/home/user/data.bin', createReadStream('data.bin'));
   * const entry = await sbx.files.write('/tmp/x.json', JSON.stringify({ a: 1 }));
   * ```
   */
  write(path: string, data: WriteData, opts: FileOptions = {}): Promise<FileEntry> {
    return guard(() => {
      // Node Readables and web ReadableStreams are both async iterables of chunks, which fetch streams.
      const body = typeof data === 'string' || data instanceof Uint8Array ? data : (data as AsyncIterable<Uint8Array>);
      return this.client.writeFile(this.ref, checkSandboxPath(path), body, opts.user, opts);
    });
  }

  /**
   * Reads a file: as text (UTF-8, the default), as bytes, or as a stream of chunks.
   *
   * @example
   * ```ts
   * const text = await sbx.files.read('/etc/hostname');
   * const bytes = await sbx.files.read('/bin/ls', { format: 'bytes' });
   * const stream = await sbx.files.read('/var/log/big.log', { format: 'stream' });
   * for await (const chunk of stream) process.stdout.write(chunk);
   * ```
   */
  read(path: string, opts?: FileOptions & { format?: 'text' }): Promise<string>;
  read<F extends ReadFormat>(path: string, opts: FileOptions & { format: F }): Promise<ReadFormats[F]>;
  read(path: string, opts: FileOptions & { format?: ReadFormat } = {}): Promise<ReadFormats[ReadFormat]> {
    return guard(async () => {
      const body = await this.client.readFile(this.ref, checkSandboxPath(path), opts.user, opts);
      const format = opts.format ?? 'text';
      if (format === 'stream') return Readable.toWeb(body) as ReadableStream<Uint8Array>;
      let bytes: Buffer;
      try {
        bytes = await readAll(body);
      } catch (err) {
        throw new DenError('INTERNAL', `reading ${path} from the den daemon broke off: ${(err as Error).message}`);
      }
      return format === 'text' ? bytes.toString('utf8') : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    });
  }

  /**
   * Lists a directory (`depth` > 1 descends into subdirectories).
   *
   * @example
   * ```ts
   * const names = (await sbx.files.list('/home/user')).map((e) => e.name);
   * ```
   */
  list(path: string, opts: FileOptions & { depth?: number } = {}): Promise<FileEntry[]> {
    return guard(() =>
      this.client.listFiles(this.ref, checkSandboxPath(path), { depth: opts.depth, user: opts.user }, opts),
    );
  }

  /**
   * Describes one file or directory; throws `FileNotFoundError` when nothing is there.
   *
   * @example
   * ```ts
   * const { size, type } = await sbx.files.stat('/home/user/app.tar');
   * ```
   */
  stat(path: string, opts: FileOptions = {}): Promise<FileEntry> {
    return guard(() => this.client.statFile(this.ref, checkSandboxPath(path), opts.user, opts));
  }

  /**
   * True when something exists at `path`.
   *
   * @example
   * ```ts
   * if (!(await sbx.files.exists('/home/user/.ready'))) await setup();
   * ```
   */
  async exists(path: string, opts: FileOptions = {}): Promise<boolean> {
    try {
      await this.stat(path, opts);
      return true;
    } catch (err) {
      if (err instanceof FileNotFoundError) return false;
      throw err;
    }
  }

  /**
   * Creates a directory and its parents.
   *
   * @example
   * ```ts
   * await sbx.files.makeDir('/home/user/project/src');
   * ```
   */
  makeDir(path: string, opts: FileOptions = {}): Promise<FileEntry> {
    return guard(() => this.client.makeDir(this.ref, checkSandboxPath(path), opts.user, opts));
  }

  /**
   * Moves (renames) a file or directory.
   *
   * @example
   * ```ts
   * await sbx.files.move('/tmp/build.tar', '/home/user/build.tar');
   * ```
   */
  move(from: string, to: string, opts: FileOptions = {}): Promise<FileEntry> {
    return guard(() =>
      this.client.moveFile(this.ref, checkSandboxPath(from, 'from'), checkSandboxPath(to, 'to'), opts.user, opts),
    );
  }

  /**
   * Removes a file or a directory with its contents.
   *
   * @example
   * ```ts
   * await sbx.files.remove('/home/user/tmp');
   * ```
   */
  remove(path: string, opts: FileOptions = {}): Promise<void> {
    return guard(() => this.client.removeFile(this.ref, checkSandboxPath(path), opts.user, opts));
  }
}

/** Runs `fn`, turning DenErrors thrown locally (path checks) into their typed classes. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof DenError ? typed(err) : err;
  }
}
