import { spawn } from 'node:child_process';
import { DenError } from '@den/shared';

/**
 * Runs a system tool (mount, losetup, mkfs.ext4, ip, nft) with an argv array, never a shell, and returns its stdout.
 * `input` is written to its stdin (`ip -batch -`, `nft -f -`). A failure becomes
 * `DenError('INTERNAL', '<tool> failed: <stderr>')`: these tools fail only when the host is misconfigured or a
 * resource is busy, which the message names.
 */
export function command(
  binary: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string } | number = {},
): Promise<string> {
  const { timeoutMs = 30_000, input } = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      env: { ...process.env, LC_ALL: 'C' },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const fail = (text: string) => {
      const shown = args.join(' ').slice(0, 200);
      reject(new DenError('INTERNAL', `${binary} ${shown} failed: ${text.trim()}`));
    };
    child.on('error', (e) => {
      clearTimeout(timer);
      fail(e.message);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) return resolve(stdout);
      const stderr = Buffer.concat(err).toString('utf8');
      fail(stderr || stdout || (signal ? `killed by ${signal} (timeout ${timeoutMs} ms)` : `exit code ${code}`));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}
