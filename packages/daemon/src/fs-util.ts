import { stat } from 'node:fs/promises';

/** True when something exists at `path` (a dangling symlink counts as missing). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
