import { DenError } from '@den/shared';
import type { EnvdTarget } from './sandbox-context.js';

const MAX_CACHED_HOMES = 1024;

/**
 * envd accepts paths relative to the user's home ("file.txt", "~/file.txt"); den's agent takes absolute paths
 * only. The home is asked of the agent once per sandbox and user (as the process environment it builds for that
 * user has it) and kept.
 */
export class PathResolver {
  private readonly homes = new Map<string, Promise<string>>();

  async resolve(target: EnvdTarget, path: string, field = 'path'): Promise<string> {
    if (path.startsWith('/')) return path;
    if (path === '')
      throw new DenError('INVALID_ARGUMENT', `${field} is required: give a path such as /home/user/a.txt`);
    const home = await this.home(target);
    const rest = path === '~' ? '' : path.startsWith('~/') ? path.slice(2) : path;
    return rest === '' ? home : `${home.replace(/\/$/, '')}/${rest}`;
  }

  private home(target: EnvdTarget): Promise<string> {
    const key = `${target.sandbox.id}\0${target.user ?? ''}`;
    let home = this.homes.get(key);
    if (!home) {
      if (this.homes.size >= MAX_CACHED_HOMES) this.homes.clear();
      home = target.agent
        .run({ cmd: ['/bin/sh', '-c', 'printf %s "$HOME"'], ...(target.user !== undefined && { user: target.user }) })
        .then((r) => (r.exit.exitCode === 0 && r.stdout.startsWith('/') ? r.stdout : '/'));
      home.catch(() => this.homes.delete(key));
      this.homes.set(key, home);
    }
    return home;
  }
}
