import { isAbsolute, join, resolve } from 'node:path';
import { DenError } from '@den/shared';
import type { S3ObjectStoreOptions } from './s3-object-store.js';

/** Which object store the daemon uses (DaemonConfig.objectStore). */
export type ObjectStoreConfig = { kind: 'local'; dir: string } | ({ kind: 's3' } & S3ObjectStoreOptions);

/**
 * The object store named by the environment: S3 when DEN_S3_BUCKET is set, a local directory when DEN_OBJECTS_DIR
 * is, otherwise undefined (the config file or the default decides).
 */
export function objectStoreFromEnv(env: NodeJS.ProcessEnv): ObjectStoreConfig | undefined {
  if (env.DEN_S3_BUCKET) {
    return {
      kind: 's3',
      bucket: env.DEN_S3_BUCKET,
      endpoint: env.DEN_S3_ENDPOINT || undefined,
      region: env.DEN_S3_REGION || undefined,
      prefix: env.DEN_S3_PREFIX || undefined,
      accessKeyId: env.DEN_S3_ACCESS_KEY_ID || undefined,
      secretAccessKey: env.DEN_S3_SECRET_ACCESS_KEY || undefined,
      forcePathStyle: env.DEN_S3_FORCE_PATH_STYLE ? env.DEN_S3_FORCE_PATH_STYLE === 'true' : undefined,
    };
  }
  if (env.DEN_OBJECTS_DIR) return { kind: 'local', dir: env.DEN_OBJECTS_DIR };
  return undefined;
}

/**
 * Checks an object store setting (from the config file or the environment) and fills in defaults: the local
 * directory `<home>/objects`, region us-east-1, and path-style addressing when an endpoint is given (self-hosted
 * servers such as MinIO, Ceph RGW or Garage rarely have per-bucket DNS names).
 */
export function resolveObjectStoreConfig(value: unknown, home: string): ObjectStoreConfig {
  if (value === undefined) return { kind: 'local', dir: join(home, 'objects') };
  if (!value || typeof value !== 'object') {
    throw new DenError('INVALID_ARGUMENT', 'objectStore must be {"kind": "local", "dir": ...} or {"kind": "s3", ...}');
  }
  const v = value as Record<string, unknown>;
  if (v.kind === 'local') {
    const dir = typeof v.dir === 'string' && v.dir ? v.dir : join(home, 'objects');
    return { kind: 'local', dir: isAbsolute(dir) ? dir : resolve(dir) };
  }
  if (v.kind !== 's3') {
    throw new DenError('INVALID_ARGUMENT', `objectStore.kind "${String(v.kind)}" must be "local" or "s3"`);
  }
  for (const field of ['bucket', 'endpoint', 'region', 'prefix', 'accessKeyId', 'secretAccessKey']) {
    if (v[field] !== undefined && typeof v[field] !== 'string') {
      throw new DenError('INVALID_ARGUMENT', `objectStore.${field} must be a string`);
    }
  }
  if (!v.bucket) {
    throw new DenError(
      'INVALID_ARGUMENT',
      'the S3 object store needs a bucket: set DEN_S3_BUCKET or objectStore.bucket',
    );
  }
  if (v.endpoint !== undefined && !/^https?:\/\/[^/]+/.test(v.endpoint as string)) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `S3 endpoint "${v.endpoint}" must be a URL like http://127.0.0.1:9000 or https://s3.example.com`,
    );
  }
  if (Boolean(v.accessKeyId) !== Boolean(v.secretAccessKey)) {
    throw new DenError(
      'INVALID_ARGUMENT',
      'set both DEN_S3_ACCESS_KEY_ID and DEN_S3_SECRET_ACCESS_KEY, or neither (then the AWS default chain is used)',
    );
  }
  return {
    kind: 's3',
    bucket: v.bucket as string,
    endpoint: v.endpoint as string | undefined,
    region: (v.region as string | undefined) || 'us-east-1',
    prefix: (v.prefix as string | undefined) ?? '',
    accessKeyId: v.accessKeyId as string | undefined,
    secretAccessKey: v.secretAccessKey as string | undefined,
    forcePathStyle: typeof v.forcePathStyle === 'boolean' ? v.forcePathStyle : v.endpoint !== undefined,
  };
}
