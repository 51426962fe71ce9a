import { createHash, randomInt } from 'node:crypto';
import { API_KEY_NAME_PATTERN, type ApiKey, type CreatedApiKey, DenError } from '@den/shared';
import type { ApiKeyRecord, ApiKeyStore } from './ports.js';

/** Every key starts with this, so a leaked one is recognisable (secret scanners, logs). */
export const API_KEY_PREFIX = 'den_';
/** 32 base62 characters: about 190 bits of randomness. */
const KEY_RANDOM_CHARS = 32;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** `lastUsedAt` is written at most this often per key, so authenticating a request is not a database write. */
const TOUCH_INTERVAL_MS = 60_000;

/**
 * API keys: den's credential for the E2B-compatible API. Only the SHA-256 of a key is stored; the key itself is
 * shown once, when it is created. Keys are long random strings, so one unsalted hash is enough (no password
 * hashing: nothing to brute-force).
 */
export class ApiKeyService {
  constructor(private readonly store: ApiKeyStore) {}

  async create(name: string): Promise<CreatedApiKey> {
    if (!new RegExp(API_KEY_NAME_PATTERN).test(name)) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `key name "${name}" is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      );
    }
    const key = newApiKey();
    const createdAt = new Date().toISOString();
    await this.store.insert({ name, keyHash: hashApiKey(key), createdAt, lastUsedAt: null });
    return { name, key, createdAt };
  }

  async list(): Promise<ApiKey[]> {
    return (await this.store.list()).map(toApiKey);
  }

  async remove(name: string): Promise<void> {
    if (!(await this.store.delete(name))) {
      throw new DenError('API_KEY_NOT_FOUND', `no API key named "${name}": list keys with \`den key ls\``, { name });
    }
  }

  /** The key's record when `key` is a known key (and notes the use), undefined otherwise. */
  async verify(key: string): Promise<ApiKey | undefined> {
    if (!key) return undefined;
    const record = await this.store.getByHash(hashApiKey(key));
    if (!record) return undefined;
    const now = new Date();
    if (!record.lastUsedAt || now.getTime() - Date.parse(record.lastUsedAt) >= TOUCH_INTERVAL_MS) {
      record.lastUsedAt = now.toISOString();
      await this.store.touch(record.name, record.lastUsedAt);
    }
    return toApiKey(record);
  }
}

function toApiKey(r: ApiKeyRecord): ApiKey {
  return { name: r.name, createdAt: r.createdAt, lastUsedAt: r.lastUsedAt };
}

/** `den_` + 32 characters of [0-9A-Za-z] from the CSPRNG (randomInt draws without modulo bias). */
export function newApiKey(): string {
  let out = API_KEY_PREFIX;
  for (let i = 0; i < KEY_RANDOM_CHARS; i++) out += BASE62[randomInt(BASE62.length)];
  return out;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}
