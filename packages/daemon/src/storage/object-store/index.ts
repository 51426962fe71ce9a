import type { ObjectStore } from '../../services/ports.js';
import type { ObjectStoreConfig } from './config.js';
import { LocalObjectStore } from './local-object-store.js';
import { S3ObjectStore } from './s3-object-store.js';

export { type ObjectStoreConfig, objectStoreFromEnv, resolveObjectStoreConfig } from './config.js';
export { checkKey, checkPrefix } from './keys.js';
export { LocalObjectStore } from './local-object-store.js';
export { S3ObjectStore, type S3ObjectStoreOptions } from './s3-object-store.js';
export { type Sha256Result, Sha256Stream } from './sha256-stream.js';

/** Builds the configured object store; the local one creates its directory. */
export async function openObjectStore(config: ObjectStoreConfig): Promise<ObjectStore> {
  if (config.kind === 'local') return LocalObjectStore.open(config.dir);
  const { kind: _kind, ...options } = config;
  return new S3ObjectStore(options);
}
