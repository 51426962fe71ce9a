import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { DenError } from '@den/shared';
import type { AgentConnection } from './ports.js';

/**
 * Unpacks a tar stream into a directory of the sandbox, as `user`: `tar -x` runs in the sandbox and the request body
 * is its stdin, relayed with back-pressure (a project upload never sits in the daemon's memory). Members keep their
 * modes but belong to the user (`--no-same-owner`); tar itself refuses members that climb out with `..`.
 */
export async function extractArchive(
  agent: AgentConnection,
  dest: string,
  body: Readable,
  user?: string,
): Promise<{ files: number }> {
  await agent.makeDir(dest, user ? { user } : {});
  const handle = await agent.openProcess({
    cmd: ['tar', '-x', '-v', '--no-same-owner', '--no-overwrite-dir', '-C', dest],
    ...(user ? { user } : {}),
  });
  const done = handle.wait();
  try {
    for await (const chunk of body) {
      if (!handle.writeStdin(chunk as Buffer)) await once(handle.stream, 'drain');
    }
    handle.closeStdin();
    handle.end();
  } catch (err) {
    handle.close();
    await done.catch(() => undefined);
    throw err;
  }
  const result = await done;
  if (result.exit.exitCode !== 0) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `the archive could not be unpacked into ${dest}: ${result.stderr.trim() || 'tar failed'}`,
    );
  }
  return { files: result.stdout.split('\n').filter(Boolean).length };
}
