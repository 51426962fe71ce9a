import { pipeline, type Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { DenError } from '@den/shared';
import type { ObjectInfo, ObjectStore } from '../../services/ports.js';
import { checkKey, checkPrefix } from './keys.js';
import { notFound } from './local-object-store.js';
import { Sha256Stream, watchSource } from './sha256-stream.js';

export interface S3ObjectStoreOptions {
  /** e.g. http://127.0.0.1:9000 for a self-hosted server; absent: AWS's endpoint for the region */
  endpoint?: string | undefined;
  /** default us-east-1 (what most self-hosted servers expect when they ignore regions) */
  region?: string | undefined;
  bucket: string;
  /** prepended to every key, e.g. `den/` to share a bucket; '' = the bucket's root */
  prefix?: string | undefined;
  /** absent: the AWS SDK's default chain (AWS_ACCESS_KEY_ID, ~/.aws, instance roles) */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  /** `https://host/bucket/key` instead of `https://bucket.host/key`; most self-hosted servers need it */
  forcePathStyle?: boolean | undefined;
  /** multipart part size; S3 requires at least 5 MiB for every part but the last */
  partSizeBytes?: number | undefined;
  /** parts uploaded at once; memory of a put is about partSizeBytes * (queueSize + 1) */
  queueSize?: number | undefined;
}

/** S3 allows at most 10,000 parts per upload; a known length above partSize * this raises the part size. */
const MAX_PARTS = 10_000;
/** DeleteObjects takes at most 1,000 keys per request. */
const DELETE_BATCH = 1000;

/**
 * The object store in an S3-compatible bucket. Puts stream through lib-storage's `Upload`: one PutObject for a body
 * smaller than a part, a multipart upload otherwise, so memory stays at a few parts whatever the object's size. S3
 * makes an object visible only when PutObject or CompleteMultipartUpload succeeds, so a body that fails midway
 * leaves no object (the multipart upload is aborted).
 *
 * The client sends checksums only where S3 requires them (`WHEN_REQUIRED`): the SDK's default since 2025 streams
 * bodies as `aws-chunked` with trailing CRC32s, which many S3-compatible servers store verbatim or refuse. den keeps
 * its own SHA-256 of every object instead (in the snapshot manifest).
 */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly keyPrefix: string;
  private readonly partSizeBytes: number;
  private readonly queueSize: number;

  constructor(opts: S3ObjectStoreOptions) {
    if (!opts.bucket) throw new DenError('INVALID_ARGUMENT', 'S3 object store needs a bucket (DEN_S3_BUCKET)');
    this.bucket = opts.bucket;
    this.keyPrefix = opts.prefix ? checkPrefix(opts.prefix.replace(/\/*$/, '/'), { allowEmpty: false }) : '';
    this.partSizeBytes = opts.partSizeBytes ?? 8 * 1024 * 1024;
    this.queueSize = opts.queueSize ?? 4;
    this.location = `s3://${this.bucket}/${this.keyPrefix}${opts.endpoint ? ` at ${opts.endpoint}` : ''}`;
    const config: S3ClientConfig = {
      region: opts.region || 'us-east-1',
      forcePathStyle: opts.forcePathStyle ?? false,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    };
    if (opts.endpoint) config.endpoint = opts.endpoint;
    if (opts.accessKeyId && opts.secretAccessKey) {
      config.credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
    }
    this.client = new S3Client(config);
  }

  async put(
    key: string,
    body: Readable,
    opts: { contentLength?: number } = {},
  ): Promise<{ size: number; sha256: string }> {
    checkKey(key);
    const hasher = new Sha256Stream({ expectedBytes: opts.contentLength });
    const source = watchSource(body);
    // pipeline destroys `hasher` with the body's error, which ends the Upload's read of it with that error.
    pipeline(body, hasher, () => {});
    const partSize = Math.max(this.partSizeBytes, Math.ceil((opts.contentLength ?? 0) / MAX_PARTS));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.keyPrefix + key, Body: hasher },
      partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      // When the body failed, the Upload may report the failed abort instead: the body's error is the cause.
      if (source.error !== undefined) throw source.error;
      if (err instanceof DenError) throw err;
      throw this.failure('put', key, err);
    }
    return hasher.result();
  }

  async get(key: string): Promise<Readable> {
    checkKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
      // In Node the SDK's body is the http.IncomingMessage (a Readable) with the SDK's helpers mixed in.
      return out.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) throw notFound(key, this.location);
      throw this.failure('get', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
      return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.failure('head', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix, { allowEmpty: true });
    const found: ObjectInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keyPrefix + prefix, ContinuationToken: token }),
        );
        for (const item of page.Contents ?? []) {
          if (item.Key === undefined) continue;
          found.push({
            key: item.Key.slice(this.keyPrefix.length),
            size: item.Size ?? 0,
            lastModified: item.LastModified ?? new Date(0),
          });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.failure('list', prefix, err);
    }
    // S3 lists in UTF-8 byte order already; some compatible servers (s3rver) list folder by folder instead.
    return found.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    try {
      // S3 answers 204 for a key that does not exist, which makes delete idempotent.
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.failure('delete', key, err);
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    checkPrefix(prefix, { allowEmpty: false });
    const keys = (await this.list(prefix)).map((o) => o.key);
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      let errors: { Key?: string | undefined; Message?: string | undefined }[];
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((k) => ({ Key: this.keyPrefix + k })), Quiet: true },
          }),
        );
        errors = out.Errors ?? [];
      } catch (err) {
        throw this.failure('deletePrefix', prefix, err);
      }
      if (errors.length > 0) {
        const first = errors[0]!;
        throw new DenError(
          'OBJECT_STORE_FAILED',
          `object store ${this.location} could not delete ${errors.length} objects under "${prefix}", ` +
            `e.g. "${first.Key}": ${first.Message}`,
        );
      }
    }
    return keys.length;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private failure(operation: string, key: string, err: unknown): DenError {
    const e = err as Error & { $metadata?: { httpStatusCode?: number }; code?: string };
    const status = e.$metadata?.httpStatusCode;
    const reason = `${e.name}${status ? ` (HTTP ${status})` : e.code ? ` (${e.code})` : ''}: ${e.message}`;
    return new DenError(
      'OBJECT_STORE_FAILED',
      `object store ${operation} "${key}" on ${this.location} failed: ${reason}; check DEN_S3_ENDPOINT, ` +
        'DEN_S3_BUCKET and the credentials',
    );
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'NoSuchBucket') return false; // also a 404, but a configuration error, not a missing object
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}
