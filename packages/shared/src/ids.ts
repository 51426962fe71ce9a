import { randomBytes } from 'node:crypto';

/**
 * Sandbox ids are 20 characters of [a-z0-9]: E2B requires `^[a-z0-9]+$`, and a fixed length matters because
 * runsc matches container ids by prefix (`idle1` is ambiguous while `idle10` exists; RUNTIME-NOTES.md).
 */
export const SANDBOX_ID_LENGTH = 20;
export const SANDBOX_ID_PATTERN = '^[a-z0-9]{20}$';
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function newSandboxId(): string {
  const bytes = randomBytes(SANDBOX_ID_LENGTH);
  let id = '';
  // 256 % 36 != 0, so a tiny bias remains; ids need uniqueness, not uniformity.
  for (const b of bytes) id += ALPHABET[b % ALPHABET.length];
  return id;
}

export function isSandboxId(value: string): boolean {
  return new RegExp(SANDBOX_ID_PATTERN).test(value);
}

/** Names are DNS-label-like so they work in host names and paths; they never contain `/` or `..`. */
export const SANDBOX_NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
export const SANDBOX_NAME_HINT =
  'use 1-63 characters: lowercase letters, digits and inner hyphens (for example "dev" or "my-box-2")';

export function isSandboxName(value: string): boolean {
  return new RegExp(SANDBOX_NAME_PATTERN).test(value);
}
