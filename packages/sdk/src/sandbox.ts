import type {
  CreateSandboxRequest,
  CreateSnapshotRequest,
  LifecycleRequest,
  NetworkSettings,
  Sandbox as SandboxInfo,
  SandboxState,
  Snapshot as SnapshotInfo,
} from '@den/shared';
import { App } from './app.js';
import { DenClient } from './client.js';
import { Commands } from './commands.js';
import type { ConnectionOptions, RequestOptions } from './config.js';
import { Files } from './files.js';
import { Ports } from './ports.js';
import { Pty } from './pty.js';

export type { SandboxInfo, SnapshotInfo };

/**
 * Options of `Sandbox.create`: what the sandbox gets (the API's `CreateSandboxRequest`: name, image, runtime, cpus,
 * memoryMB, diskMB, pids, env, metadata), plus how to reach the daemon.
 */
export interface SandboxCreateOptions extends CreateSandboxRequest, ConnectionOptions {
  signal?: AbortSignal;
}

/** Options of `Sandbox.list`. */
export interface SandboxListOptions extends RequestOptions {
  /** only sandboxes in this state */
  state?: SandboxState;
}

/**
 * One sandbox: an isolated Linux environment with its own persistent filesystem.
 *
 * @example
 * ```ts
 * import { Sandbox } from '@den/sdk';
 *
 * const sbx = await Sandbox.create({ name: 'dev', runtime: 'runsc', memoryMB: 2048 });
 * const { stdout } = await sbx.commands.run('uname -a');
 * await sbx.files.write('/home/user/hello.txt', 'hi\n');
 * await sbx.kill();
 * ```
 */
export class Sandbox {
  /** the sandbox's id (20 characters of [a-z0-9]); all calls address the sandbox by it */
  readonly id: string;
  /** the sandbox's name, or null */
  readonly name: string | null;
  /** processes: run, list, kill, attach */
  readonly commands: Commands;
  /** the filesystem: read, write, list, ... */
  readonly files: Files;
  /** interactive processes on pseudo-terminals */
  readonly pty: Pty;
  /** listening ports and their preview URLs */
  readonly ports: Ports;
  /** live previews: deploy a project, follow its logs */
  readonly app: App;
  /** the egress policy */
  readonly network: {
    /**
     * Changes the egress policy at once, also while the sandbox runs.
     *
     * @example
     * ```ts
     * await sbx.network.update({ policy: 'allowlist', allow: ['pypi.org', '*.pythonhosted.org'] });
     * ```
     */
    update(settings: NetworkSettings, opts?: RequestOptions): Promise<SandboxInfo>;
  };
  /** idle auto-pause and the timeout action */
  readonly lifecycle: {
    /**
     * Pauses the sandbox after `idleTimeoutMs` without activity (preview traffic, exec/PTY sessions, file calls, CPU
     * use inside); the next request wakes it. 0 turns it off. `onTimeout` changes what the timeout does.
     *
     * @example
     * ```ts
     * await sbx.lifecycle.update({ idleTimeoutMs: 10 * 60_000 });
     * ```
     */
    update(settings: LifecycleRequest, opts?: RequestOptions): Promise<SandboxInfo>;
  };
  /** snapshots of this sandbox in the daemon's object store */
  readonly snapshots: {
    /**
     * Stores the sandbox's files (and, on runsc, its memory) as a snapshot; the sandbox keeps running. A sandbox
     * created with `Sandbox.create({ fromSnapshot })` starts from it, on any daemon that shares the object store.
     *
     * @example
     * ```ts
     * const snap = await sbx.snapshots.create({ name: 'before-upgrade' });
     * const fork = await Sandbox.create({ fromSnapshot: snap.id });
     * ```
     */
    create(request?: CreateSnapshotRequest, opts?: RequestOptions): Promise<SnapshotInfo>;
    /** the snapshots taken of this sandbox, oldest first */
    list(opts?: RequestOptions): Promise<SnapshotInfo[]>;
  };
  /** secret of private previews: header X-Den-Preview-Token, query den_preview_token */
  readonly previewToken: string;
  private readonly previewDomain: string;
  /** the HTTP layer this sandbox uses */
  readonly client: DenClient;

  /** @internal Use `Sandbox.create` or `Sandbox.connect`. */
  constructor(info: Pick<SandboxInfo, 'id' | 'name' | 'preview'>, client: DenClient) {
    this.id = info.id;
    this.name = info.name;
    this.client = client;
    this.previewToken = info.preview.token;
    this.previewDomain = info.preview.domain;
    this.ports = new Ports(client, info.id);
    this.app = new App(client, info.id);
    this.network = { update: (settings, opts) => client.updateNetwork(info.id, settings, opts) };
    this.lifecycle = { update: (settings, opts) => client.updateLifecycle(info.id, settings, opts) };
    this.snapshots = {
      create: (request, opts) => client.createSnapshot(info.id, request, opts),
      list: async (opts) => (await client.listSnapshots(opts)).filter((s) => s.sandboxId === info.id),
    };
    this.commands = new Commands(client, info.id);
    this.files = new Files(client, info.id);
    this.pty = new Pty(client, info.id);
  }

  /**
   * Creates a sandbox and resolves once it runs and its agent answers.
   *
   * @example
   * ```ts
   * const sbx = await Sandbox.create({ image: 'base', cpus: 2, env: { CI: '1' } });
   * const fast = await Sandbox.create({ runtime: 'runc', url: 'http://10.0.0.5:7070' });
   * ```
   */
  static async create(opts: SandboxCreateOptions = {}): Promise<Sandbox> {
    const { url, requestTimeoutMs, signal, ...spec } = opts;
    const client = new DenClient({ url, requestTimeoutMs });
    const request: CreateSandboxRequest = {};
    for (const [key, value] of Object.entries(spec)) {
      if (value !== undefined) (request as Record<string, unknown>)[key] = value;
    }
    const info = await client.createSandbox(request, signal ? { signal } : undefined);
    return new Sandbox(info, client);
  }

  /**
   * Connects to an existing sandbox by id or name; throws `SandboxNotFoundError` when there is none.
   *
   * @example
   * ```ts
   * const dev = await Sandbox.connect('dev');
   * ```
   */
  static async connect(idOrName: string, opts: RequestOptions = {}): Promise<Sandbox> {
    const { signal, ...conn } = opts;
    const client = new DenClient(conn);
    const info = await client.getSandbox(idOrName, signal ? { signal } : undefined);
    return new Sandbox(info, client);
  }

  /**
   * Lists sandboxes, optionally only those in one state.
   *
   * @example
   * ```ts
   * const running = await Sandbox.list({ state: 'running' });
   * ```
   */
  static list(opts: SandboxListOptions = {}): Promise<SandboxInfo[]> {
    const { state, signal, ...conn } = opts;
    return new DenClient(conn).listSandboxes(state ? { state } : {}, signal ? { signal } : undefined);
  }

  /**
   * The host (and port) that reaches `port` inside the sandbox through den's preview proxy, as E2B's `getHost`:
   * `8000-<id>.localhost:7070`. Private previews also need `previewToken`.
   *
   * @example
   * ```ts
   * const res = await fetch(`http://${sbx.getHost(8000)}/`, { headers: { 'X-Den-Preview-Token': sbx.previewToken } });
   * ```
   */
  getHost(port: number): string {
    return `${port}-${this.id}.${this.previewDomain}`;
  }

  /**
   * The sandbox's current description (state, limits, timestamps, last error).
   *
   * @example
   * ```ts
   * const { state } = await sbx.info();
   * ```
   */
  info(opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.getSandbox(this.id, opts);
  }

  /**
   * Stops the sandbox; its filesystem is kept and `start()` brings it back.
   *
   * @example
   * ```ts
   * await sbx.stop();
   * ```
   */
  stop(opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.stopSandbox(this.id, opts);
  }

  /**
   * Starts a stopped sandbox.
   *
   * @example
   * ```ts
   * await sbx.start();
   * ```
   */
  start(opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.startSandbox(this.id, opts);
  }

  /**
   * Stops and starts the sandbox (every process ends; files stay).
   *
   * @example
   * ```ts
   * await sbx.restart();
   * ```
   */
  restart(opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.restartSandbox(this.id, opts);
  }

  /**
   * Pauses the sandbox: memory and processes too on runsc (they continue where they were), the filesystem only on
   * runc or when a checkpoint fails; `pause.memory` says which. Connections the sandbox held to the outside are
   * closed (its processes see a reset on resume) and `pause.reason` lists them. Any later call resumes it.
   *
   * @example
   * ```ts
   * const info = await sbx.pause();
   * if (!info.pause?.memory) console.log(info.pause?.reason);
   * ```
   */
  pause(opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.pauseSandbox(this.id, opts);
  }

  /**
   * Resumes a paused sandbox explicitly (calls to a paused sandbox resume it by themselves).
   *
   * @example
   * ```ts
   * await sbx.resume();
   * ```
   */
  resume(opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.resumeSandbox(this.id, opts);
  }

  /**
   * Every snapshot in the daemon's object store, oldest first (`sbx.snapshots.list()` has one sandbox's).
   *
   * @example
   * ```ts
   * const names = (await Sandbox.listSnapshots()).map((s) => s.name);
   * ```
   */
  static listSnapshots(opts: RequestOptions = {}): Promise<SnapshotInfo[]> {
    const { signal, ...conn } = opts;
    return new DenClient(conn).listSnapshots(signal ? { signal } : undefined);
  }

  /**
   * Deletes a snapshot by id or name.
   *
   * @example
   * ```ts
   * await Sandbox.deleteSnapshot('before-upgrade');
   * ```
   */
  static deleteSnapshot(ref: string, opts: RequestOptions = {}): Promise<void> {
    const { signal, ...conn } = opts;
    return new DenClient(conn).deleteSnapshot(ref, signal ? { signal } : undefined);
  }

  /**
   * Resumes a paused sandbox by id or name and connects to it.
   *
   * @example
   * ```ts
   * const sbx = await Sandbox.resume('dev');
   * ```
   */
  static async resume(idOrName: string, opts: RequestOptions = {}): Promise<Sandbox> {
    const { signal, ...conn } = opts;
    const client = new DenClient(conn);
    const info = await client.resumeSandbox(idOrName, signal ? { signal } : undefined);
    return new Sandbox(info, client);
  }

  /**
   * Deletes the sandbox with its filesystem.
   *
   * @example
   * ```ts
   * await sbx.kill();
   * ```
   */
  kill(opts?: RequestOptions): Promise<void> {
    return this.client.deleteSandbox(this.id, opts);
  }

  /**
   * Sets the timeout to `timeoutMs` from now (0 = none): then the sandbox is deleted, or stopped when it was
   * created with `onTimeout: 'stop'`. A timeout counts only while the sandbox runs.
   *
   * @example
   * ```ts
   * const sbx = await Sandbox.create({ timeoutMs: 60_000 });
   * await sbx.setTimeout(5 * 60_000); // five minutes from now instead
   * ```
   */
  setTimeout(timeoutMs: number, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.client.setSandboxTimeout(this.id, timeoutMs, opts);
  }
}
