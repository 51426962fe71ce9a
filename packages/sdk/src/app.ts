import { readdir } from 'node:fs/promises';
import type { AppInfo, AppStartRequest } from '@den/shared';
import { create as createTar } from 'tar';
import type { DenClient } from './client.js';
import type { RequestOptions } from './config.js';

/** Options of `app.deploy`. */
export interface DeployOptions extends Omit<AppStartRequest, 'dir' | 'git'> {
  /** where the project goes in the sandbox; default /home/user/app */
  dir?: string;
  /** names left out of the upload at any depth; default node_modules, .venv, __pycache__, .git */
  exclude?: string[];
}

const DEFAULT_EXCLUDES = ['node_modules', '.venv', '__pycache__', '.git'];

/**
 * Live previews: a project's dev server in the sandbox, behind a preview URL.
 *
 * @example
 * ```ts
 * const sbx = await Sandbox.create({ network: { policy: 'none' } });
 * const app = await sbx.app.deploy('./my-vite-app');
 * console.log(app.urls.host); // http://5173-<id>.localhost:7070/
 * for await (const line of sbx.app.logs({ follow: true })) console.log(line);
 * ```
 */
export class App {
  /** @internal */
  constructor(
    private readonly client: DenClient,
    private readonly sandboxId: string,
  ) {}

  /**
   * Uploads a local project directory (without node_modules, .venv, ...) and starts it.
   *
   * @example
   * ```ts
   * const { urls, kind, port } = await sbx.app.deploy('./api', { readyTimeoutMs: 60_000 });
   * ```
   */
  async deploy(localDir: string, options: DeployOptions = {}, opts?: RequestOptions): Promise<AppInfo> {
    const { dir = '/home/user/app', exclude = DEFAULT_EXCLUDES, ...start } = options;
    await this.upload(localDir, dir, exclude, opts);
    return this.start({ ...start, dir }, opts);
  }

  /** Uploads a local directory's contents into `dir` in the sandbox, as a tar stream. */
  async upload(localDir: string, dir: string, exclude = DEFAULT_EXCLUDES, opts?: RequestOptions): Promise<number> {
    const skip = new Set(exclude);
    const entries = (await readdir(localDir)).filter((name) => !skip.has(name));
    const tar = createTar(
      { cwd: localDir, portable: true, filter: (path) => !path.split('/').some((part) => skip.has(part)) },
      entries,
    );
    return (await this.client.uploadArchive(this.sandboxId, dir, tar, undefined, opts)).files;
  }

  /**
   * Starts (or with `restart` restarts) the app in a directory already in the sandbox, or cloned from `git`.
   *
   * @example
   * ```ts
   * await sbx.app.start({ git: 'https://git.example.com/team/site.git' });
   * ```
   */
  start(request: AppStartRequest = {}, opts?: RequestOptions): Promise<AppInfo> {
    return this.client.startApp(this.sandboxId, request, opts);
  }

  /** Restarts the dev server without installing again. */
  restart(opts?: RequestOptions): Promise<AppInfo> {
    return this.client.startApp(this.sandboxId, { restart: true }, opts);
  }

  /** The app's kind, port, dev server pid (null when stopped) and URLs. */
  info(opts?: RequestOptions): Promise<AppInfo> {
    return this.client.getApp(this.sandboxId, opts);
  }

  stop(opts?: RequestOptions): Promise<void> {
    return this.client.stopApp(this.sandboxId, opts);
  }

  /** Log lines (install and dev server); `follow` keeps streaming until `opts.signal` aborts. */
  logs(options: { follow?: boolean; lines?: number } = {}, opts?: RequestOptions): AsyncGenerator<string> {
    return this.client.appLogs(this.sandboxId, options, opts);
  }
}
