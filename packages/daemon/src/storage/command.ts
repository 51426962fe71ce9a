import { execFile } from 'node:child_process';
import { DenError } from '@den/shared';

/**
 * Runs a system tool (mount, umount, losetup, mkfs.ext4) with an argv array, never a shell. A failure becomes
 * `DenError('INTERNAL', '<tool> failed: <stderr>')`: these tools fail only when the host is misconfigured or a
 * file is busy, which the message names.
 */
export function command(binary: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: timeoutMs, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) {
        const text = (stderr || stdout || err.message).trim();
        reject(new DenError('INTERNAL', `${binary} ${args.join(' ')} failed: ${text}`));
        return;
      }
      resolve(stdout);
    });
  });
}
