import { DenError } from './errors.js';

/**
 * Validates a path inside a sandbox given to the files API. Paths must be absolute and free of `..` segments
 * and NUL bytes, so a request cannot name something outside what it appears to name. (Symlinks are resolved by
 * the agent inside the sandbox's own root, so they cannot lead to the host.)
 */
export function checkSandboxPath(path: unknown, field = 'path'): string {
  if (typeof path !== 'string' || path.length === 0) {
    throw new DenError('INVALID_ARGUMENT', `${field} is required: give an absolute path such as /home/user/a.txt`);
  }
  if (path.includes('\0')) throw new DenError('INVALID_ARGUMENT', `${field} must not contain NUL bytes`);
  if (!path.startsWith('/')) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `${field} "${path}" is relative: give an absolute path inside the sandbox, such as /home/user/${path}`,
    );
  }
  if (path.split('/').includes('..')) {
    throw new DenError('INVALID_ARGUMENT', `${field} "${path}" contains "..": give the path without parent references`);
  }
  if (path.length > 4096) throw new DenError('INVALID_ARGUMENT', `${field} is longer than 4096 characters`);
  return path;
}
