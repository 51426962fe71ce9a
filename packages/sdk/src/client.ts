import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type {
  ApiKey,
  AppInfo,
  AppStartRequest,
  CreatedApiKey,
  CreateImageRequest,
  CreateSandboxRequest,
  CreateSnapshotRequest,
  ExecRequest,
  FileEntry,
  Image,
  LifecycleRequest,
  ListeningPort,
  NetworkSettings,
  ProcessInfo,
  Sandbox as SandboxInfo,
  SandboxState,
  Snapshot as SnapshotInfo,
  Status,
} from '@den/shared';
import { DenError } from '@den/shared';
import WebSocket from 'ws';
import {
  type ConnectionOptions,
  type RequestOptions,
  type ResolvedConfig,
  resolveConfig,
  toWebSocketUrl,
} from './config.js';
import { ConnectionError, errorFromBody, InvalidArgumentError, RequestTimeoutError } from './errors.js';
import { readAll, requestBody } from './http-body.js';
import { sseData } from './sse.js';

type Query = Record<string, string | number | undefined>;

/** A request body: JSON (serialized here) or raw bytes, possibly streamed. */
type Body = { json: unknown } | { raw: string | Uint8Array | AsyncIterable<Uint8Array> };

interface Call {
  method: string;
  path: string;
  query?: Query;
  body?: Body;
  /**
   * When the timeout stops: 'body' keeps it until the whole response body is read (JSON answers); 'headers'
   * clears it once the response headers arrive (streams, whose length is unbounded); 'none' sends without a
   * limit (streamed uploads: the daemon answers only after the last byte).
   */
  timeout: 'body' | 'headers' | 'none';
}

/**
 * The HTTP layer of the SDK: one method per route of the daemon's native API v1 (see the route table in
 * packages/daemon/src/api/README.md). `Sandbox` and the CLI are built on it. JSON and streamed requests use the
 * global `fetch` (undici, whose global dispatcher keeps connections alive, so consecutive calls reuse one
 * socket); streams that need both directions use WebSockets (`ws`). Every non-2xx answer becomes the typed
 * error of its code (`errorFromBody`).
 *
 * @example
 * ```ts
 * const den = new DenClient({ url: 'http://127.0.0.1:7070' });
 * const status = await den.status();
 * console.log(status.version, status.sandboxes);
 * ```
 */
export class DenClient {
  /** client-level options; per-call options override them, the environment fills in what both leave out */
  readonly options: Readonly<ConnectionOptions>;

  constructor(options: ConnectionOptions = {}) {
    this.options = { ...options };
    // Fail fast on a malformed URL or timeout instead of at the first request.
    resolveConfig({}, this.options);
  }

  /** The configuration a call with `opts` uses. */
  config(opts: ConnectionOptions = {}): ResolvedConfig {
    return resolveConfig(opts, this.options);
  }

  /** The base URL requests go to (no trailing slash). */
  get url(): string {
    return this.config().url;
  }

  // ---- daemon ----

  /**
   * Answers when the daemon is up.
   *
   * @example
   * ```ts
   * await new DenClient().health(); // { ok: true }
   * ```
   */
  async health(opts?: RequestOptions): Promise<{ ok: boolean }> {
    return this.json({ method: 'GET', path: '/v1/health', timeout: 'body' }, opts);
  }

  /**
   * Daemon version, uptime, runtime availability and sandbox counts by state.
   *
   * @example
   * ```ts
   * const { runtimes } = await new DenClient().status();
   * ```
   */
  async status(opts?: RequestOptions): Promise<Status> {
    return this.json({ method: 'GET', path: '/v1/status', timeout: 'body' }, opts);
  }

  /**
   * The images sandboxes can be created from.
   *
   * @example
   * ```ts
   * const names = (await new DenClient().images()).map((i) => i.name);
   * ```
   */
  async images(opts?: RequestOptions): Promise<Image[]> {
    const body = await this.json<{ images: Image[] }>({ method: 'GET', path: '/v1/images', timeout: 'body' }, opts);
    return body.images;
  }

  // ---- sandboxes ----

  /**
   * Creates a sandbox; resolves once it runs and its agent answers. `Sandbox.create` wraps this.
   *
   * @example
   * ```ts
   * const info = await den.createSandbox({ name: 'dev', runtime: 'runc' });
   * ```
   */
  async createSandbox(request: CreateSandboxRequest, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'POST', path: '/v1/sandboxes', body: { json: request }, timeout: 'body' }, opts);
  }

  /**
   * Lists sandboxes, optionally in one state.
   *
   * @example
   * ```ts
   * const stopped = await den.listSandboxes({ state: 'stopped' });
   * ```
   */
  async listSandboxes(filter: { state?: SandboxState } = {}, opts?: RequestOptions): Promise<SandboxInfo[]> {
    const body = await this.json<{ sandboxes: SandboxInfo[] }>(
      { method: 'GET', path: '/v1/sandboxes', query: { state: filter.state }, timeout: 'body' },
      opts,
    );
    return body.sandboxes;
  }

  /**
   * Describes one sandbox by id or name; throws `SandboxNotFoundError` when there is none.
   *
   * @example
   * ```ts
   * const { state } = await den.getSandbox('dev');
   * ```
   */
  async getSandbox(ref: string, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'GET', path: sandboxPath(ref), timeout: 'body' }, opts);
  }

  /**
   * Starts a stopped sandbox.
   *
   * @example
   * ```ts
   * await den.startSandbox('dev');
   * ```
   */
  async startSandbox(ref: string, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'POST', path: `${sandboxPath(ref)}/start`, timeout: 'body' }, opts);
  }

  /**
   * Stops a sandbox, keeping its files.
   *
   * @example
   * ```ts
   * await den.stopSandbox('dev');
   * ```
   */
  async stopSandbox(ref: string, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'POST', path: `${sandboxPath(ref)}/stop`, timeout: 'body' }, opts);
  }

  /**
   * Stops and starts a sandbox.
   *
   * @example
   * ```ts
   * await den.restartSandbox('dev');
   * ```
   */
  async restartSandbox(ref: string, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'POST', path: `${sandboxPath(ref)}/restart`, timeout: 'body' }, opts);
  }

  /**
   * Pauses a sandbox: on runsc its memory is saved too (processes continue where they were on resume); on runc, or
   * when the checkpoint fails, only the filesystem is kept. `pause.memory` in the answer says which.
   *
   * @example
   * ```ts
   * const { pause } = await den.pauseSandbox('dev'); // { memory: true, reason: null, at }
   * ```
   */
  async pauseSandbox(ref: string, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'POST', path: `${sandboxPath(ref)}/pause`, timeout: 'body' }, opts);
  }

  /**
   * Resumes a paused sandbox (any exec, file or preview request does that too).
   *
   * @example
   * ```ts
   * await den.resumeSandbox('dev');
   * ```
   */
  async resumeSandbox(ref: string, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json({ method: 'POST', path: `${sandboxPath(ref)}/resume`, timeout: 'body' }, opts);
  }

  /**
   * Deletes a sandbox with its files.
   *
   * @example
   * ```ts
   * await den.deleteSandbox('dev');
   * ```
   */
  async deleteSandbox(ref: string, opts?: RequestOptions): Promise<void> {
    await this.empty({ method: 'DELETE', path: sandboxPath(ref), timeout: 'body' }, opts);
  }

  /**
   * Changes a sandbox's egress policy; a running sandbox gets it at once.
   *
   * @example
   * ```ts
   * await den.updateNetwork('dev', { policy: 'allowlist', allow: ['registry.npmjs.org', '10.0.0.0/8'] });
   * ```
   */
  async updateNetwork(ref: string, settings: NetworkSettings, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json(
      { method: 'PUT', path: `${sandboxPath(ref)}/network`, body: { json: settings }, timeout: 'body' },
      opts,
    );
  }

  /**
   * Sets a sandbox's timeout to `timeoutMs` from now (0 = none); its onTimeout action (delete or stop) runs then.
   *
   * @example
   * ```ts
   * await den.setSandboxTimeout('job', 10 * 60_000); // ten more minutes
   * ```
   */
  async setSandboxTimeout(ref: string, timeoutMs: number, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json(
      { method: 'POST', path: `${sandboxPath(ref)}/timeout`, body: { json: { timeoutMs } }, timeout: 'body' },
      opts,
    );
  }

  /**
   * Changes the idle timeout (pause after that long without activity; 0 = never) and/or the timeout action.
   *
   * @example
   * ```ts
   * await den.updateLifecycle('ide', { idleTimeoutMs: 10 * 60_000 });
   * ```
   */
  async updateLifecycle(ref: string, settings: LifecycleRequest, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json(
      { method: 'PUT', path: `${sandboxPath(ref)}/lifecycle`, body: { json: settings }, timeout: 'body' },
      opts,
    );
  }

  /**
   * Makes a sandbox's preview URLs public (no token needed) or private again.
   *
   * @example
   * ```ts
   * await den.updatePreview('web', { public: true });
   * ```
   */
  async updatePreview(ref: string, settings: { public: boolean }, opts?: RequestOptions): Promise<SandboxInfo> {
    return this.json(
      { method: 'PUT', path: `${sandboxPath(ref)}/preview`, body: { json: settings }, timeout: 'body' },
      opts,
    );
  }

  /**
   * TCP ports listening inside a running sandbox, with their preview URLs.
   *
   * @example
   * ```ts
   * const ports = await den.listPorts('web'); // [{ port: 8000, address: '0.0.0.0', urls: { host, path }, ... }]
   * ```
   */
  async listPorts(ref: string, opts?: RequestOptions): Promise<ListeningPort[]> {
    const body = await this.json<{ ports: ListeningPort[] }>(
      { method: 'GET', path: `${sandboxPath(ref)}/ports`, timeout: 'body' },
      opts,
    );
    return body.ports;
  }

  // ---- API keys ----

  /**
   * Creates an API key (for den's E2B-compatible API); the answer is the only time den shows the key.
   *
   * @example
   * ```ts
   * const { key } = await den.createApiKey('ci'); // den_...
   * ```
   */
  async createApiKey(name: string, opts?: RequestOptions): Promise<CreatedApiKey> {
    return this.json({ method: 'POST', path: '/v1/keys', body: { json: { name } }, timeout: 'body' }, opts);
  }

  /**
   * The API keys: names and times, never the keys.
   *
   * @example
   * ```ts
   * const names = (await den.listApiKeys()).map((k) => k.name);
   * ```
   */
  async listApiKeys(opts?: RequestOptions): Promise<ApiKey[]> {
    const body = await this.json<{ keys: ApiKey[] }>({ method: 'GET', path: '/v1/keys', timeout: 'body' }, opts);
    return body.keys;
  }

  /**
   * Removes an API key; requests with it fail from then on. `ApiKeyNotFoundError` when there is none.
   *
   * @example
   * ```ts
   * await den.deleteApiKey('ci');
   * ```
   */
  async deleteApiKey(name: string, opts?: RequestOptions): Promise<void> {
    await this.empty({ method: 'DELETE', path: `/v1/keys/${encodeURIComponent(name)}`, timeout: 'body' }, opts);
  }

  // ---- snapshots and images ----

  /**
   * Stores the sandbox's files (and, on runsc, its memory: processes continue in a sandbox made from it) in the
   * daemon's object store. The sandbox keeps running. `sbx.snapshots.create` wraps this.
   *
   * @example
   * ```ts
   * const snap = await den.createSnapshot('dev', { name: 'before-upgrade' });
   * ```
   */
  async createSnapshot(ref: string, request: CreateSnapshotRequest = {}, opts?: RequestOptions): Promise<SnapshotInfo> {
    const path = `/v1/sandboxes/${encodeURIComponent(ref)}/snapshots`;
    return this.json({ method: 'POST', path, body: { json: request }, timeout: 'body' }, opts);
  }

  /**
   * Every snapshot in the object store (shared by the daemons that share it), oldest first.
   *
   * @example
   * ```ts
   * const names = (await den.listSnapshots()).map((s) => s.name);
   * ```
   */
  async listSnapshots(opts?: RequestOptions): Promise<SnapshotInfo[]> {
    const body = await this.json<{ snapshots: SnapshotInfo[] }>(
      { method: 'GET', path: '/v1/snapshots', timeout: 'body' },
      opts,
    );
    return body.snapshots;
  }

  /**
   * One snapshot by id or name; `SnapshotNotFoundError` when there is none.
   *
   * @example
   * ```ts
   * const { memory } = await den.getSnapshot('before-upgrade');
   * ```
   */
  async getSnapshot(ref: string, opts?: RequestOptions): Promise<SnapshotInfo> {
    return this.json({ method: 'GET', path: `/v1/snapshots/${encodeURIComponent(ref)}`, timeout: 'body' }, opts);
  }

  /**
   * Deletes a snapshot from the object store.
   *
   * @example
   * ```ts
   * await den.deleteSnapshot('before-upgrade');
   * ```
   */
  async deleteSnapshot(ref: string, opts?: RequestOptions): Promise<void> {
    await this.empty({ method: 'DELETE', path: `/v1/snapshots/${encodeURIComponent(ref)}`, timeout: 'body' }, opts);
  }

  /**
   * A new image whose top layer is the sandbox's files (Velda's `image create --from-instance`).
   *
   * @example
   * ```ts
   * await den.createImage({ name: 'my-image', fromSandbox: 'dev' });
   * const sbx = await Sandbox.create({ image: 'my-image' });
   * ```
   */
  async createImage(request: CreateImageRequest, opts?: RequestOptions): Promise<Image> {
    return this.json({ method: 'POST', path: '/v1/images', body: { json: request }, timeout: 'body' }, opts);
  }

  /**
   * Removes an image that no sandbox uses.
   *
   * @example
   * ```ts
   * await den.deleteImage('my-image');
   * ```
   */
  async deleteImage(name: string, opts?: RequestOptions): Promise<void> {
    await this.empty({ method: 'DELETE', path: `/v1/images/${encodeURIComponent(name)}`, timeout: 'body' }, opts);
  }

  // ---- live preview apps ----

  /**
   * Unpacks a tar stream into a directory of the sandbox (created when missing); resolves with the number of
   * entries. `files.uploadDir` builds the tar from a local directory.
   *
   * @example
   * ```ts
   * await den.uploadArchive('web', '/home/user/app', createReadStream('app.tar'));
   * ```
   */
  async uploadArchive(
    ref: string,
    path: string,
    tar: Uint8Array | AsyncIterable<Uint8Array>,
    user?: string,
    opts?: RequestOptions,
  ): Promise<{ files: number }> {
    const call: Call = { method: 'PUT', path: `${sandboxPath(ref)}/archive`, query: { path, user }, timeout: 'none' };
    const res = await this.bodyCall(call, tar, opts);
    return JSON.parse((await readAll(res)).toString('utf8')) as { files: number };
  }

  /**
   * Detects the project's runtime, installs its packages, starts its dev server and resolves once its port
   * listens, with the preview URLs.
   *
   * @example
   * ```ts
   * const app = await den.startApp('web', { dir: '/home/user/app' });
   * console.log(app.urls.host);
   * ```
   */
  async startApp(ref: string, request: AppStartRequest = {}, opts?: RequestOptions): Promise<AppInfo> {
    return this.json(
      { method: 'POST', path: `${sandboxPath(ref)}/app`, body: { json: request }, timeout: 'none' },
      opts,
    );
  }

  /** The app den started in the sandbox (kind, port, pid or null, URLs); AppNotFoundError when there is none. */
  async getApp(ref: string, opts?: RequestOptions): Promise<AppInfo> {
    return this.json({ method: 'GET', path: `${sandboxPath(ref)}/app`, timeout: 'body' }, opts);
  }

  /** Stops the app's dev server. */
  async stopApp(ref: string, opts?: RequestOptions): Promise<void> {
    await this.empty({ method: 'DELETE', path: `${sandboxPath(ref)}/app`, timeout: 'body' }, opts);
  }

  /**
   * The app's log (install steps and dev server) line by line; with `follow` it keeps streaming new lines until
   * `opts.signal` aborts.
   *
   * @example
   * ```ts
   * for await (const line of den.appLogs('web', { follow: true })) console.log(line);
   * ```
   */
  async *appLogs(
    ref: string,
    options: { follow?: boolean; lines?: number } = {},
    opts?: RequestOptions,
  ): AsyncGenerator<string> {
    const call: Call = {
      method: 'GET',
      path: `${sandboxPath(ref)}/app/logs`,
      query: { follow: options.follow ? 'true' : undefined, lines: options.lines },
      timeout: 'none',
    };
    const res = await this.bodyCall(call, undefined, opts);
    yield* sseData(res);
  }

  // ---- processes ----

  /**
   * Starts a process and returns the streamed response: a body of frames (STARTED, STDOUT/STDERR..., EXIT or
   * ERROR). The caller reads and closes the body; `opts.signal` aborts the stream. `commands.run` wraps this.
   *
   * @example
   * ```ts
   * const res = await den.exec('dev', { cmd: ['uname', '-a'] });
   * const decoder = new FrameDecoder();
   * for await (const chunk of res.body!) for (const frame of decoder.push(chunk)) console.log(frame.type);
   * ```
   */
  async exec(ref: string, request: ExecRequest, opts?: RequestOptions): Promise<Response> {
    return this.send(
      { method: 'POST', path: `${sandboxPath(ref)}/exec`, body: { json: request }, timeout: 'headers' },
      opts,
    );
  }

  /**
   * Opens the exec WebSocket; the caller sends the SPEC frame first. `pty.create` and `commands.run` with stdin
   * wrap this.
   *
   * @example
   * ```ts
   * const ws = await den.execWebSocket('dev');
   * ws.send(encodeJsonFrame(FrameType.SPEC, { cmd: ['cat'] }));
   * ```
   */
  async execWebSocket(ref: string, opts?: RequestOptions): Promise<WebSocket> {
    return this.webSocket(`${sandboxPath(ref)}/exec/ws`, opts);
  }

  /**
   * The processes the sandbox's agent knows.
   *
   * @example
   * ```ts
   * const processes = await den.listProcesses('dev');
   * ```
   */
  async listProcesses(ref: string, opts?: RequestOptions): Promise<ProcessInfo[]> {
    const body = await this.json<{ processes: ProcessInfo[] }>(
      { method: 'GET', path: `${sandboxPath(ref)}/processes`, timeout: 'body' },
      opts,
    );
    return body.processes;
  }

  /**
   * Opens the WebSocket of a running (background) process: replays its buffered output, then live frames.
   *
   * @example
   * ```ts
   * const ws = await den.processWebSocket('dev', 42);
   * ```
   */
  async processWebSocket(ref: string, pid: number, opts?: RequestOptions): Promise<WebSocket> {
    return this.webSocket(`${sandboxPath(ref)}/processes/${checkPid(pid)}/ws`, opts);
  }

  /**
   * Sends a signal to a process.
   *
   * @example
   * ```ts
   * await den.signalProcess('dev', 42, 'SIGTERM');
   * ```
   */
  async signalProcess(ref: string, pid: number, signal: string, opts?: RequestOptions): Promise<void> {
    await this.empty(
      {
        method: 'POST',
        path: `${sandboxPath(ref)}/processes/${checkPid(pid)}/signal`,
        body: { json: { signal } },
        timeout: 'body',
      },
      opts,
    );
  }

  /**
   * Writes bytes to a process's stdin.
   *
   * @example
   * ```ts
   * await den.sendStdin('dev', 42, 'yes\n');
   * ```
   */
  async sendStdin(ref: string, pid: number, data: string | Uint8Array, opts?: RequestOptions): Promise<void> {
    await this.empty(
      {
        method: 'POST',
        path: `${sandboxPath(ref)}/processes/${checkPid(pid)}/stdin`,
        body: { raw: data },
        timeout: 'body',
      },
      opts,
    );
  }

  // ---- files ----

  /**
   * Downloads a file; the caller reads (or destroys) the returned stream.
   *
   * @example
   * ```ts
   * for await (const chunk of await den.readFile('dev', '/etc/hostname')) process.stdout.write(chunk);
   * ```
   */
  async readFile(ref: string, path: string, user?: string, opts?: RequestOptions): Promise<Readable> {
    const call: Call = { method: 'GET', path: `${sandboxPath(ref)}/files`, query: { path, user }, timeout: 'headers' };
    const res = await this.bodyCall(call, undefined, opts);
    return res;
  }

  /**
   * Uploads a file, streaming `data` when it is an async iterable (a Node stream or a web ReadableStream).
   *
   * @example
   * ```ts
   * await den.writeFile('dev', '/tmp/big.iso', createReadStream('big.iso'));
   * ```
   */
  async writeFile(
    ref: string,
    path: string,
    data: string | Uint8Array | AsyncIterable<Uint8Array>,
    user?: string,
    opts?: RequestOptions,
  ): Promise<FileEntry> {
    const streamed = typeof data !== 'string' && !(data instanceof Uint8Array);
    const call: Call = {
      method: 'PUT',
      path: `${sandboxPath(ref)}/files`,
      query: { path, user },
      timeout: streamed ? 'none' : 'body',
    };
    const res = await this.bodyCall(call, data, opts);
    const text = (await readAll(res)).toString('utf8');
    try {
      return JSON.parse(text) as FileEntry;
    } catch {
      throw new DenError('INTERNAL', `the den daemon answered PUT ${call.path} with non-JSON`);
    }
  }

  /**
   * Removes a file or directory.
   *
   * @example
   * ```ts
   * await den.removeFile('dev', '/tmp/old');
   * ```
   */
  async removeFile(ref: string, path: string, user?: string, opts?: RequestOptions): Promise<void> {
    await this.empty(
      { method: 'DELETE', path: `${sandboxPath(ref)}/files`, query: { path, user }, timeout: 'body' },
      opts,
    );
  }

  /**
   * Lists a directory.
   *
   * @example
   * ```ts
   * const entries = await den.listFiles('dev', '/home/user', { depth: 2 });
   * ```
   */
  async listFiles(
    ref: string,
    path: string,
    options: { depth?: number; user?: string } = {},
    opts?: RequestOptions,
  ): Promise<FileEntry[]> {
    const body = await this.json<{ entries: FileEntry[] }>(
      {
        method: 'GET',
        path: `${sandboxPath(ref)}/files/list`,
        query: { path, depth: options.depth, user: options.user },
        timeout: 'body',
      },
      opts,
    );
    return body.entries;
  }

  /**
   * Describes one path.
   *
   * @example
   * ```ts
   * const { size } = await den.statFile('dev', '/etc/hostname');
   * ```
   */
  async statFile(ref: string, path: string, user?: string, opts?: RequestOptions): Promise<FileEntry> {
    return this.json(
      { method: 'GET', path: `${sandboxPath(ref)}/files/stat`, query: { path, user }, timeout: 'body' },
      opts,
    );
  }

  /**
   * Creates a directory and its parents.
   *
   * @example
   * ```ts
   * await den.makeDir('dev', '/home/user/src');
   * ```
   */
  async makeDir(ref: string, path: string, user?: string, opts?: RequestOptions): Promise<FileEntry> {
    return this.json(
      { method: 'POST', path: `${sandboxPath(ref)}/files/mkdir`, body: { json: { path, user } }, timeout: 'body' },
      opts,
    );
  }

  /**
   * Moves (renames) a path.
   *
   * @example
   * ```ts
   * await den.moveFile('dev', '/tmp/a', '/tmp/b');
   * ```
   */
  async moveFile(ref: string, from: string, to: string, user?: string, opts?: RequestOptions): Promise<FileEntry> {
    return this.json(
      { method: 'POST', path: `${sandboxPath(ref)}/files/move`, body: { json: { from, to, user } }, timeout: 'body' },
      opts,
    );
  }

  // ---- transport ----

  /** Sends a request whose answer is JSON and returns it parsed. */
  private async json<T>(call: Call, opts?: RequestOptions): Promise<T> {
    return this.fetch(call, opts, async (res, url) => {
      const text = await res.text();
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new DenError('INTERNAL', `the den daemon at ${url} answered ${call.method} ${call.path} with non-JSON`);
      }
    });
  }

  /** Sends a request whose answer has no body (204), draining whatever arrives so the socket can be reused. */
  private async empty(call: Call, opts?: RequestOptions): Promise<void> {
    await this.fetch(call, opts, async (res) => {
      await res.arrayBuffer();
    });
  }

  /** Sends a request and returns the response once its headers arrive; the caller reads the body. */
  private send(call: Call, opts?: RequestOptions): Promise<Response> {
    return this.fetch(call, opts, async (res) => res);
  }

  /**
   * The one place that talks HTTP: resolves the URL, applies the timeout and the caller's abort signal, maps
   * transport failures to ConnectionError / RequestTimeoutError and non-2xx answers to typed DenErrors.
   * `read` consumes a 2xx response; for `timeout: 'body'` it runs while the timer is still armed.
   */
  private async fetch<T>(
    call: Call,
    opts: RequestOptions | undefined,
    read: (res: Response, baseUrl: string) => Promise<T>,
  ): Promise<T> {
    const cfg = this.config(opts);
    const target = cfg.url + call.path + queryString(call.query);
    const controller = new AbortController();
    const external = opts?.signal;
    const onAbort = () => controller.abort(external?.reason);
    if (external) {
      if (external.aborted) throw external.reason;
      external.addEventListener('abort', onAbort, { once: true });
    }
    let timedOut = false;
    const timeoutMs = call.timeout === 'none' ? 0 : cfg.requestTimeoutMs;
    let timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            controller.abort();
          }, timeoutMs)
        : undefined;
    const clearTimer = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    const unlink = () => external?.removeEventListener('abort', onAbort);

    const init: RequestInit = { method: call.method, signal: controller.signal, headers: {} };
    const headers = init.headers as Record<string, string>;
    if (call.body && 'json' in call.body) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(call.body.json);
    } else if (call.body) {
      headers['content-type'] = 'application/octet-stream';
      const raw = call.body.raw;
      if (typeof raw === 'string' || raw instanceof Uint8Array) {
        init.body = raw;
      } else {
        init.body = raw;
        // Node's fetch needs this to send a streamed body (half duplex: the answer follows the last byte).
        init.duplex = 'half';
      }
    }

    try {
      const res = await fetch(target, init);
      if (!res.ok) throw await errorFromResponse(res, call);
      if (call.timeout === 'headers') {
        // A stream may last as long as the process or the download; the caller's signal still aborts it.
        clearTimer();
        return await read(res, cfg.url);
      }
      const value = await read(res, cfg.url);
      unlink();
      return value;
    } catch (err) {
      unlink();
      if (timedOut) throw new RequestTimeoutError(cfg.url, timeoutMs);
      if (external?.aborted) throw external.reason;
      if (err instanceof DenError) throw err;
      throw new ConnectionError(cfg.url, err);
    } finally {
      clearTimer();
    }
  }

  /** A file-body request over node:http (see http-body.ts); non-2xx answers become typed DenErrors. */
  private async bodyCall(
    call: Call,
    body: string | Uint8Array | AsyncIterable<Uint8Array> | undefined,
    opts: RequestOptions | undefined,
  ): Promise<IncomingMessage> {
    const cfg = this.config(opts);
    const res = await requestBody({
      method: call.method as 'GET' | 'PUT',
      url: cfg.url + call.path + queryString(call.query),
      body,
      timeoutMs: call.timeout === 'none' ? 0 : cfg.requestTimeoutMs,
      signal: opts?.signal,
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      const text = (await readAll(res).catch(() => Buffer.alloc(0))).toString('utf8');
      throw errorFromText(text, status, call.method, call.path);
    }
    return res;
  }

  /**
   * Opens a WebSocket and resolves once it is open. A refused upgrade (the daemon answers the HTTP request with
   * a JSON error, e.g. 404 SANDBOX_NOT_FOUND) rejects with that typed error.
   */
  private webSocket(path: string, opts?: RequestOptions): Promise<WebSocket> {
    const cfg = this.config(opts);
    const target = toWebSocketUrl(cfg.url) + path;
    return new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(target, {
        perMessageDeflate: false,
        ...(cfg.requestTimeoutMs > 0 ? { handshakeTimeout: cfg.requestTimeoutMs } : {}),
      });
      let settled = false;
      const settle = (err: Error | undefined) => {
        if (settled) return;
        settled = true;
        opts?.signal?.removeEventListener('abort', onAbort);
        if (err) {
          ws.removeAllListeners('open');
          // Keep a listener so a late socket error cannot become an uncaught exception.
          ws.on('error', () => {});
          ws.terminate();
          reject(err);
        } else {
          resolve(ws);
        }
      };
      const onAbort = () => settle(opts?.signal?.reason ?? new Error('aborted'));
      if (opts?.signal?.aborted) return onAbort();
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      ws.once('open', () => settle(undefined));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (err) => settle(new ConnectionError(cfg.url, err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          settle(errorFromText(text, res.statusCode ?? 0, 'GET', path));
        });
      });
      ws.once('error', (err) => {
        if (/handshake has timed out/i.test(err.message))
          settle(new RequestTimeoutError(cfg.url, cfg.requestTimeoutMs));
        else settle(new ConnectionError(cfg.url, err));
      });
    });
  }
}

/** `/v1/sandboxes/<ref>` with the ref escaped (ids and names never need it, but a typo must not change the path). */
function sandboxPath(ref: string): string {
  if (ref.length === 0) throw new InvalidArgumentError('sandbox reference is empty: give an id or a name');
  return `/v1/sandboxes/${encodeURIComponent(ref)}`;
}

function checkPid(pid: number): number {
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new InvalidArgumentError(`pid ${pid} is invalid: give the positive integer from commands.list()`);
  }
  return pid;
}

function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  const s = params.toString();
  return s ? `?${s}` : '';
}

async function errorFromResponse(res: Response, call: Call): Promise<DenError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // The body is only used for the message; the status alone still makes an error.
  }
  return errorFromText(text, res.status, call.method, call.path);
}

function errorFromText(text: string, status: number, method: string, path: string): DenError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const snippet = text.trim().slice(0, 200);
  return errorFromBody(
    body,
    `the den daemon answered ${method} ${path} with HTTP ${status}${snippet ? `: ${snippet}` : ''}`,
  );
}
