import { DenError } from '@den/shared';

/** S3's limit on key length (UTF-8 bytes); the local store keeps the same limit so both accept the same keys. */
const MAX_KEY_BYTES = 1024;

/**
 * Checks an object key and returns it. Keys are relative `/`-separated paths so that the local store can map them
 * onto a directory tree without escaping it: no leading or trailing `/`, no empty, `.` or `..` segment, no `\`.
 */
export function checkKey(key: string): string {
  const problem = keyProblem(key);
  if (problem) {
    throw new DenError('INVALID_ARGUMENT', `object key ${JSON.stringify(key)} ${problem}`);
  }
  return key;
}

/**
 * Checks a listing prefix: '' (everything), a key, a key followed by `/`, or a key whose last segment is cut short
 * (`snapshots/sb` matches `snapshots/sbx1/...`).
 */
export function checkPrefix(prefix: string, opts: { allowEmpty: boolean }): string {
  if (prefix === '' && opts.allowEmpty) return prefix;
  const problem = prefix === '' ? 'is empty' : keyProblem(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  if (problem) {
    throw new DenError('INVALID_ARGUMENT', `object key prefix ${JSON.stringify(prefix)} ${problem}`);
  }
  return prefix;
}

function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'is empty; use a path like snapshots/<id>/manifest.json';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `is longer than ${MAX_KEY_BYTES} bytes`;
  if (hasControlChar(key)) return 'contains a control character';
  if (key.includes('\\')) return 'contains "\\"; separate segments with "/"';
  if (key.startsWith('/')) return 'starts with "/"; keys are relative, like snapshots/<id>/manifest.json';
  if (key.endsWith('/')) return 'ends with "/"; a key names an object, not a folder';
  for (const segment of key.split('/')) {
    if (segment === '') return 'has an empty segment ("//")';
    if (segment === '.' || segment === '..') return `has a "${segment}" segment; keys may not climb out of the store`;
  }
  return undefined;
}

/** C0 controls and DEL: invisible in logs and listings, and NUL cannot appear in a file name at all. */
function hasControlChar(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
