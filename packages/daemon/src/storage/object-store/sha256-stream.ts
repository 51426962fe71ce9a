import { createHash, type Hash } from 'node:crypto';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { DenError } from '@den/shared';

export interface Sha256Result {
  size: number;
  /** lowercase hex */
  sha256: string;
}

/**
 * A pass-through that hashes and counts the bytes flowing through it, so a store computes the checksum while it
 * writes instead of reading the data twice. With `expectedBytes` it fails as soon as the count is exceeded and at
 * the end when it falls short, so a writer never commits a body of the wrong length.
 */
export class Sha256Stream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private digestHex: string | undefined;
  private readonly expectedBytes: number | undefined;

  constructor(opts: { expectedBytes?: number | undefined } = {}) {
    super();
    this.expectedBytes = opts.expectedBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expectedBytes !== undefined && this.bytes > this.expectedBytes) {
      callback(lengthMismatch(this.expectedBytes, `more than ${this.expectedBytes}`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.expectedBytes !== undefined && this.bytes !== this.expectedBytes) {
      callback(lengthMismatch(this.expectedBytes, String(this.bytes)));
      return;
    }
    this.digestHex = this.hash.digest('hex');
    callback();
  }

  /** size and sha256 of everything that passed; only after the stream ended */
  result(): Sha256Result {
    if (this.digestHex === undefined) throw new Error('Sha256Stream.result() called before the stream ended');
    return { size: this.bytes, sha256: this.digestHex };
  }
}

function lengthMismatch(expected: number, got: string): DenError {
  return new DenError(
    'INVALID_ARGUMENT',
    `object body has ${got} bytes but contentLength says ${expected}; pass the body's real length or none`,
  );
}

/** Remembers the first error `body` emits, so a store can tell the caller's stream failing from its own failure. */
export function watchSource(body: Readable): { readonly error: unknown } {
  const seen: { error: unknown } = { error: undefined };
  body.on('error', (err) => {
    seen.error ??= err;
  });
  return seen;
}
