import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  type CreateSandboxRequest,
  DenError,
  isSandboxId,
  isSandboxName,
  LIMITS,
  type NetworkSettings,
  newSandboxId,
  type OnTimeoutAction,
  SANDBOX_NAME_HINT,
  type Sandbox,
  type SandboxState,
} from '@den/shared';
import type { DenPaths } from '../paths.js';
import { KeyedMutex } from './keyed-mutex.js';
import type {
  AgentConnection,
  AgentConnector,
  ImageCatalog,
  NetworkManager,
  NetworkPolicy,
  RootfsManager,
  Runtime,
  RuntimeName,
  SandboxRecord,
  SandboxStore,
} from './ports.js';
import { wakeRestoredAgent } from './restore-wake.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SandboxServiceDeps {
  store: SandboxStore;
  runtimes: Partial<Record<RuntimeName, Runtime>>;
  rootfs: RootfsManager;
  network: NetworkManager;
  /** policy of sandboxes created without one */
  defaultNetwork: NetworkPolicy;
  images: ImageCatalog;
  connectAgent: AgentConnector;
  paths: DenPaths;
  /** the directory mounted at /.den (built once per daemon start) */
  agentRootDir: string;
  /** host directory shared read-only with every sandbox at PACKAGE_CACHE_MOUNT (npm and pip caches); optional */
  packageCacheDir?: string;
  defaultRuntime: RuntimeName;
  log: Logger;
}

/** How long a fresh container's agent has to answer before the start counts as failed. */
const AGENT_READY_TIMEOUT_MS = 20_000;
/** How long a pause waits for TCP connections in the sandbox to close before it gives up on saving memory. */
const CONNECTIONS_CLOSE_MS = 1_500;
/**
 * How long after a pause with memory its stopped container, mounts and network are removed: a sandbox woken within
 * this (a timeout pause followed by a request, pause/resume in a script) skips that work and its wait. They hold no
 * CPU or memory meanwhile (the sandbox's processes ended with the checkpoint).
 */
const PAUSE_CLEAR_DELAY_MS = 1_000;
/** Grace period between SIGTERM and SIGKILL when stopping (the agent forwards SIGTERM to every process). */
const STOP_GRACE_MS = 3_000;

/**
 * Sandbox lifecycle. The database holds the desired state; every step that changes the machine is idempotent,
 * so `converge()` can always be re-run: after an error, a daemon crash in the middle of a create, or a restart.
 */
export class SandboxService {
  private readonly locks = new KeyedMutex();
  private readonly agents = new Map<string, AgentConnection>();
  /** sandboxes paused with memory whose container, mounts and network this daemon process has removed */
  private readonly pausedTornDown = new Set<string>();
  /** sandboxes whose network rules this daemon process has applied */
  private readonly adopted = new Set<string>();
  private poolListener: ((image: string, runtime: RuntimeName) => void) | undefined;
  private readonly previewListeners: ((sandboxId: string) => void)[] = [];
  /** streams waiting across a pause: called whenever a sandbox ends up running, stopped or deleted */
  private readonly settleWaiters = new Map<string, Set<() => void>>();
  /** called before a sandbox stops or is deleted (the preview proxy drops its pooled connections into it) */
  private readonly leaveListeners: ((sandboxId: string) => void)[] = [];

  constructor(private readonly deps: SandboxServiceDeps) {}

  // ---- queries ----

  /** Finds a sandbox by id or name. */
  async resolve(ref: string): Promise<SandboxRecord> {
    const rec =
      (isSandboxId(ref) ? await this.deps.store.get(ref) : undefined) ?? (await this.deps.store.getByName(ref));
    if (!rec || rec.desiredState === 'deleted' || rec.pooled) {
      throw new DenError('SANDBOX_NOT_FOUND', `no sandbox "${ref}": list sandboxes with \`den ls\``, { ref });
    }
    return rec;
  }

  async list(filter: { state?: SandboxState } = {}): Promise<SandboxRecord[]> {
    return (await this.deps.store.list(filter)).filter((r) => r.desiredState !== 'deleted' && !r.pooled);
  }

  async counts(): Promise<Record<string, number>> {
    return this.deps.store.countByState();
  }

  /** The agent of a running sandbox; a clear error naming the fix otherwise. */
  async agentFor(ref: string): Promise<AgentConnection> {
    let rec = await this.resolve(ref);
    // Wake on request: a call for a paused sandbox resumes it and waits for it (concurrent callers share the
    // resume: the first holds the sandbox's lock, the others then find it running).
    if (rec.desiredState === 'paused' || WAKEABLE_STATES.has(rec.state)) rec = await this.resume(rec.id);
    if (rec.state !== 'running') {
      const label = rec.name ?? rec.id;
      const hint =
        rec.state === 'stopped'
          ? `: start it with \`den start ${label}\``
          : rec.state === 'error'
            ? ` (${rec.lastError ?? 'unknown error'}); den retries by itself, or run \`den restart ${label}\``
            : '; try again in a moment';
      throw new DenError('SANDBOX_NOT_RUNNING', `sandbox ${label} is ${rec.state}${hint}`, { state: rec.state });
    }
    return this.agent(rec.id);
  }

  // ---- commands ----

  /**
   * Creates a sandbox and resolves once it runs. `options.envdAccessToken` is the E2B API's secret for the
   * sandbox's envd endpoint (not part of the native request: native clients never need it).
   */
  async create(
    req: CreateSandboxRequest,
    options: { envdAccessToken?: string; pooled?: boolean } = {},
  ): Promise<SandboxRecord> {
    if (!options.pooled) {
      const claimed = await this.claimPooled(req, options);
      if (claimed) return claimed;
    }
    const runtime = req.runtime ?? this.deps.defaultRuntime;
    this.runtimeFor(runtime);
    const image = req.image ?? 'base';
    await this.deps.images.get(image);
    if (req.name !== undefined) this.checkName(req.name);
    const cpus = req.cpus ?? LIMITS.cpus.default;
    const memoryMB = req.memoryMB ?? LIMITS.memoryMB.default;
    this.checkHostCapacity(cpus, memoryMB);
    const network = req.network ? this.deps.network.normalize(req.network) : this.deps.defaultNetwork;

    const rec: SandboxRecord = {
      id: newSandboxId(),
      name: req.name ?? null,
      image,
      runtime,
      state: 'creating',
      desiredState: 'running',
      cpus,
      memoryMB,
      diskMB: req.diskMB ?? LIMITS.diskMB.default,
      pids: req.pids ?? LIMITS.pids.default,
      env: req.env ?? {},
      metadata: req.metadata ?? {},
      createdAt: new Date().toISOString(),
      startedAt: null,
      lastError: null,
      address: null,
      network,
      previewPublic: req.preview?.public ?? false,
      previewToken: newPreviewToken(),
      pause: null,
      pooled: options.pooled === true,
      timeoutAt: timeoutAtFrom(req.timeoutMs),
      onTimeout: toStoredAction(req.onTimeout),
      envdAccessToken: options.envdAccessToken ?? null,
    };
    // The row goes in first: whatever exists on the machine for a sandbox always has a row, so a crash at any
    // later point is finished (or cleaned up) by reconcile. The address is chosen and stored in one step.
    await this.locks.run(ADDRESS_LOCK, async () => {
      rec.address = this.deps.network.allocateAddress(await this.addressesInUse());
      await this.deps.store.insert(rec);
    });
    return this.locks.run(rec.id, async () => {
      try {
        return await this.ensureRunning(rec, { fresh: true });
      } catch (err) {
        // A create that fails leaves nothing behind: no container, mount, loop device, directory or row.
        this.deps.log.warn({ sandbox: rec.id, err: String(err) }, 'create failed; rolling back');
        await this.ensureDeleted(rec).catch((cleanupErr: unknown) =>
          this.deps.log.error({ sandbox: rec.id, err: String(cleanupErr) }, 'rollback after failed create failed'),
        );
        throw err;
      }
    });
  }

  /**
   * Warm pool: a create whose limits are the defaults takes a sandbox that already runs unassigned (same image and
   * runtime) and gives it the request's name, env, metadata, network policy, preview and timeout settings. The
   * hostname stays the sandbox id. Returns undefined when the request cannot be served from the pool.
   */
  private async claimPooled(
    req: CreateSandboxRequest,
    options: { envdAccessToken?: string },
  ): Promise<SandboxRecord | undefined> {
    const runtime = req.runtime ?? this.deps.defaultRuntime;
    const image = req.image ?? 'base';
    const defaults =
      req.cpus === undefined && req.memoryMB === undefined && req.diskMB === undefined && req.pids === undefined;
    if (!defaults) return undefined;
    const t = new StepTimer();
    if (req.name !== undefined) {
      this.checkName(req.name);
      if (await this.deps.store.getByName(req.name)) {
        throw new DenError('NAME_TAKEN', `a sandbox named "${req.name}" already exists: choose another --name`);
      }
    }
    const picked = await this.locks.run(POOL_LOCK, async () => {
      const candidates = (await this.deps.store.list({ state: 'running' })).filter(
        (r) => r.pooled && r.desiredState === 'running' && r.image === image && r.runtime === runtime,
      );
      const rec = candidates[0];
      if (!rec) return undefined;
      // Taken out of the pool at once, so no other create can take it too.
      await this.deps.store.update(rec.id, { pooled: false, name: req.name ?? null });
      return rec;
    });
    if (!picked) return undefined;
    t.mark('pick');
    try {
      return await this.locks.run(picked.id, async () => {
        const network = req.network ? this.deps.network.normalize(req.network) : this.deps.defaultNetwork;
        // The pooled sandbox booted with the image's environment: the agent is asked only when the request adds some.
        if (req.env && Object.keys(req.env).length > 0) {
          const imageEnv = await this.imageEnv(picked.image);
          await this.agent(picked.id).setSandboxEnv({ ...imageEnv, ...req.env });
        }
        t.mark('env');
        const updated = (await this.deps.store.update(picked.id, {
          env: req.env ?? {},
          metadata: req.metadata ?? {},
          network,
          previewPublic: req.preview?.public ?? false,
          timeoutAt: timeoutAtFrom(req.timeoutMs),
          onTimeout: toStoredAction(req.onTimeout),
          envdAccessToken: options.envdAccessToken ?? null,
        }))!;
        if (JSON.stringify(network) !== JSON.stringify(picked.network) && updated.address) {
          await this.deps.network.updatePolicy(this.networkSpec(updated, updated.address));
        }
        t.mark('store');
        this.poolListener?.(picked.image, picked.runtime);
        this.deps.log.info({ sandbox: picked.id, ms: t.steps }, 'sandbox handed out from the warm pool');
        return updated;
      });
    } catch (err) {
      // A pooled sandbox that cannot be handed out is removed; the create then makes a fresh one.
      this.deps.log.warn({ sandbox: picked.id, err: String(err) }, 'a warm-pool sandbox could not be handed out');
      await this.remove(picked.id).catch(() => undefined);
      return undefined;
    }
  }

  /** Called when a pooled sandbox was taken (the pool refills). */
  onPoolClaim(listener: (image: string, runtime: RuntimeName) => void): void {
    this.poolListener = listener;
  }

  /** Unassigned sandboxes (running or on their way), oldest first. */
  async pooled(): Promise<SandboxRecord[]> {
    return (await this.deps.store.list()).filter((r) => r.pooled && r.desiredState === 'running');
  }

  /** Deletes an unassigned pooled sandbox (the pool shrank). */
  async discardPooled(id: string): Promise<void> {
    await this.locks.run(POOL_LOCK, async () => {
      const rec = await this.deps.store.get(id);
      if (!rec?.pooled) return;
      await this.deps.store.update(id, { pooled: false, desiredState: 'deleted', state: 'deleting' });
    });
    const rec = await this.deps.store.get(id);
    if (rec?.desiredState === 'deleted') await this.locks.run(id, () => this.ensureDeleted(rec));
  }

  /** Whether any sandbox exists, pooled ones included (the daemon keeps its network while one does). */
  async anyOnMachine(): Promise<boolean> {
    return (await this.deps.store.list()).length > 0;
  }

  private async imageEnv(imageName: string): Promise<Record<string, string>> {
    const image = await this.deps.images.get(imageName);
    return Object.fromEntries(image.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  }

  /**
   * Pauses a running sandbox. runsc: its memory and processes are checkpointed (they continue where they were on
   * resume); if the checkpoint fails (e.g. a process holds an outside TCP connection), or on runc (CRIU does not work
   * on these kernels), only the filesystem is kept and `pause.memory` is false with the reason. A paused sandbox uses
   * no CPU or memory: no container, mount or network namespace remains.
   */
  async pause(ref: string): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    return this.locks.run(rec.id, async () => {
      const current = await this.resolve(rec.id);
      if (current.state === 'paused') return current;
      if (current.state !== 'running') {
        throw new DenError(
          'SANDBOX_NOT_RUNNING',
          `sandbox ${current.name ?? current.id} is ${current.state}: only a running sandbox can be paused`,
          {
            state: current.state,
          },
        );
      }
      await this.deps.store.update(rec.id, { desiredState: 'paused', timeoutAt: null });
      return this.ensurePaused(current);
    });
  }

  /** Resumes a paused sandbox (from its memory image when there is one); a running one is returned as it is. */
  async resume(ref: string): Promise<SandboxRecord> {
    return this.start(ref);
  }

  async start(ref: string): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    return this.locks.run(rec.id, async () => {
      const current = await this.resolve(rec.id);
      await this.deps.store.update(rec.id, { desiredState: 'running' });
      if (current.state === 'running') return current;
      return this.ensureRunning(current);
    });
  }

  async stop(ref: string): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    return this.locks.run(rec.id, async () => {
      // A timeout counts only while the sandbox runs: a stopped sandbox keeps its files until someone acts, and
      // whoever starts it again sets a new timeout if it wants one (E2B's connect does).
      await this.deps.store.update(rec.id, { desiredState: 'stopped', timeoutAt: null });
      return this.ensureStopped(await this.resolve(rec.id));
    });
  }

  async restart(ref: string): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    return this.locks.run(rec.id, async () => {
      await this.deps.store.update(rec.id, { desiredState: 'running' });
      const stopped = await this.ensureStopped(await this.resolve(rec.id));
      return this.ensureRunning(stopped);
    });
  }

  async remove(ref: string): Promise<void> {
    const rec = await this.resolve(ref);
    await this.locks.run(rec.id, async () => {
      await this.deps.store.update(rec.id, { desiredState: 'deleted', state: 'deleting' });
      await this.ensureDeleted(rec);
    });
  }

  /** Changes the egress policy; a running sandbox gets it at once (open connections stay). */
  async updateNetwork(ref: string, settings: NetworkSettings): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    const network = this.deps.network.normalize(settings);
    return this.locks.run(rec.id, async () => {
      const updated = (await this.deps.store.update(rec.id, { network }))!;
      if (updated.state === 'running' && updated.address) {
        await this.deps.network.updatePolicy(this.networkSpec(updated, updated.address));
      }
      return updated;
    });
  }

  /**
   * Sets the sandbox's timeout to `timeoutMs` from now (0 = none). With `onlyExtend`, a timeout already later
   * than that is kept (E2B's connect: "TTL is only extended"). `onTimeout` changes the action too.
   */
  async setTimeout(
    ref: string,
    timeoutMs: number,
    opts: { onlyExtend?: boolean; onTimeout?: OnTimeoutAction } = {},
  ): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    let timeoutAt = timeoutAtFrom(timeoutMs);
    if (opts.onlyExtend && rec.timeoutAt && timeoutAt !== null && rec.timeoutAt > timeoutAt) {
      timeoutAt = rec.timeoutAt;
    }
    const patch: Partial<SandboxRecord> = { timeoutAt };
    if (opts.onTimeout) patch.onTimeout = toStoredAction(opts.onTimeout);
    return (await this.deps.store.update(rec.id, patch))!;
  }

  async updatePreview(ref: string, settings: { public: boolean }): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    const updated = (await this.deps.store.update(rec.id, { previewPublic: settings.public }))!;
    for (const listener of this.previewListeners) listener(rec.id);
    return updated;
  }

  /** Registers a callback run when a sandbox's preview settings change (the preview proxy forgets its cache). */
  onPreviewChange(listener: (sandboxId: string) => void): void {
    this.previewListeners.push(listener);
  }

  /** TCP ports listening inside a running sandbox, from its agent. */
  async listeningPorts(ref: string): Promise<{ sandboxId: string; sockets: { port: number; address: string }[] }> {
    const rec = await this.resolve(ref);
    const sockets = await (await this.agentFor(rec.id)).listPorts();
    return { sandboxId: rec.id, sockets };
  }

  /** Where the preview proxy sends a request for `port` of a sandbox, and the token it must check. */
  async previewTarget(
    ref: string,
    port: number,
  ): Promise<{ sandboxId: string; address: string; port: number; token: string | null; wokeAt?: number }> {
    const rec = await this.resolve(ref);
    const target = {
      sandboxId: rec.id,
      address: rec.address!,
      port,
      token: rec.previewPublic ? null : rec.previewToken,
    };
    if (rec.state === 'running' && rec.address) return target;
    await this.agentFor(rec.id);
    return { ...target, address: (await this.resolve(rec.id)).address!, wokeAt: Date.now() };
  }

  // ---- reconcile ----

  /**
   * Brings the machine in line with the database: run at daemon start (after a crash or restart) and
   * periodically. Running sandboxes whose container is alive are re-attached, half-created ones are finished,
   * half-deleted ones are removed, and containers or directories with no row are removed.
   */
  async reconcileAll(opts: { removeStrays: boolean }): Promise<void> {
    const records = await this.deps.store.list();
    const known = new Set(records.map((r) => r.id));
    await Promise.all(records.map((rec) => this.reconcileOne(rec.id)));
    if (!opts.removeStrays) return;
    for (const rt of Object.values(this.deps.runtimes)) {
      const containers = await rt.list().catch(() => []);
      for (const c of containers) {
        if (!known.has(c.id)) {
          this.deps.log.warn({ container: c.id, runtime: rt.name }, 'removing a container no sandbox owns');
          await rt
            .delete(c.id)
            .catch((err: unknown) => this.deps.log.error({ err: String(err) }, 'stray delete failed'));
        }
      }
    }
    for (const id of await this.deps.network.listOnMachine()) {
      if (!known.has(id)) {
        this.deps.log.warn({ sandbox: id }, 'removing a network namespace no sandbox owns');
        await this.deps.network.tearDown(id, null);
      }
    }
    for (const id of await this.deps.rootfs.listOnDisk()) {
      if (!known.has(id)) {
        this.deps.log.warn({ sandbox: id }, 'removing a sandbox directory no sandbox owns');
        await this.deps.rootfs.destroy(id);
        await rm(this.deps.paths.sandbox(id).dir, { recursive: true, force: true });
      }
    }
  }

  /** Converges one sandbox toward its desired state unless a lifecycle operation is already running on it. */
  async reconcileOne(id: string): Promise<void> {
    if (this.locks.isBusy(id)) return;
    await this.locks.run(id, async () => {
      const rec = await this.deps.store.get(id);
      if (!rec) return;
      try {
        if (rec.desiredState === 'deleted') await this.ensureDeleted(rec);
        else if (rec.desiredState === 'stopped') {
          if (rec.state !== 'stopped') await this.ensureStopped(rec);
        } else if (rec.desiredState === 'paused') {
          // A pause interrupted by a crash: what is left is stopped; a memory image, if complete, stays usable.
          if (rec.state !== 'paused') await this.finishPause(rec, await this.hasMemoryImage(rec.id));
          // Paused with memory, and its clear-up may not have happened (a crash right after the pause, or it failed):
          // done once per daemon process (every step is idempotent).
          else if (rec.pause?.memory && !this.pausedTornDown.has(id)) await this.tearDownPaused(rec);
        } else if (!(await this.isHealthy(rec))) {
          this.deps.log.warn({ sandbox: id, state: rec.state }, 'sandbox is not running as desired; starting it');
          await this.ensureRunning(rec);
        }
      } catch (err) {
        this.deps.log.error({ sandbox: id, err: String(err) }, 'reconcile failed');
        await this.deps.store.update(id, { state: 'error', lastError: (err as Error).message });
      }
    });
  }

  /** Registers a callback run before any sandbox stops or is deleted. */
  onLeaving(listener: (sandboxId: string) => void): void {
    this.leaveListeners.push(listener);
  }

  /** The sandbox's `startedAt` while it is being paused or is paused; undefined otherwise. */
  async pausing(id: string): Promise<{ startedAt: string | null } | undefined> {
    const rec = await this.deps.store.get(id);
    if (!rec || (rec.desiredState !== 'paused' && rec.state !== 'pausing' && rec.state !== 'paused')) return undefined;
    return { startedAt: rec.startedAt };
  }

  /**
   * Resolves once the sandbox runs again, with `restored` true when it came back from its memory image (same
   * `startedAt`: its processes continued), false when it started afresh, stopped or was deleted (process streams
   * kept open across a pause: api/process-follow.ts). Does not wake it.
   */
  async untilRunning(id: string, startedAt: string | null): Promise<{ restored: boolean }> {
    for (;;) {
      // Registered before the read, so a change between the two is not missed.
      const settled = new Promise<void>((resolve) => {
        const waiters = this.settleWaiters.get(id) ?? new Set();
        waiters.add(resolve);
        this.settleWaiters.set(id, waiters);
      });
      const rec = await this.deps.store.get(id);
      if (!rec || rec.desiredState === 'deleted' || rec.desiredState === 'stopped' || rec.state === 'stopped') {
        this.settled(id);
        return { restored: false };
      }
      if (rec.state === 'running') {
        this.settled(id);
        return { restored: rec.startedAt === startedAt };
      }
      await settled;
    }
  }

  private settled(id: string): void {
    const waiters = this.settleWaiters.get(id);
    this.settleWaiters.delete(id);
    for (const wake of waiters ?? []) wake();
  }

  private notifyLeaving(sandboxId: string): void {
    for (const listener of this.leaveListeners) {
      try {
        listener(sandboxId);
      } catch (err) {
        this.deps.log.warn({ sandbox: sandboxId, err: String(err) }, 'a stop listener failed');
      }
    }
  }

  async shutdown(): Promise<void> {
    for (const agent of this.agents.values()) agent.close();
    this.agents.clear();
  }

  // ---- steps (idempotent) ----

  private async isHealthy(rec: SandboxRecord): Promise<boolean> {
    const st = await this.runtimeFor(rec.runtime).state(rec.id);
    if (st?.status !== 'running') return false;
    try {
      await this.agent(rec.id).waitReady(2_000);
      if (rec.state !== 'running') await this.deps.store.update(rec.id, { state: 'running', lastError: null });
      // A daemon that restarted finds the sandbox running: its rules and the resolver's view are restored once.
      if (rec.address && !this.adopted.has(rec.id)) {
        await this.deps.network.adopt(this.networkSpec(rec, rec.address));
        this.adopted.add(rec.id);
      }
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Starts the sandbox from whatever state the machine is in. Unless the sandbox was just inserted (`fresh`), an
   * existing container is removed first: one whose agent stopped answering (the reconcile case) must be replaced,
   * not reused (the runtime adapters leave a running container alone).
   */
  private async ensureRunning(rec: SandboxRecord, opts: { fresh?: boolean } = {}): Promise<SandboxRecord> {
    const { rootfs, images, paths } = this.deps;
    const rt = this.runtimeFor(rec.runtime);
    const p = paths.sandbox(rec.id);
    const t = new StepTimer();
    if (rec.state !== 'creating') await this.deps.store.update(rec.id, { state: 'starting' });
    const image = await images.get(rec.image);
    await mkdir(p.dir, { recursive: true });
    this.dropAgent(rec.id);
    // The root filesystem and the network do not depend on each other: both are set up at once.
    const [rootfsDir, net] = await allSettled([
      t.timed('rootfs', async () => {
        await rootfs.ensureDisk(rec.id, rec.diskMB);
        return rootfs.mount(rec.id, images.layerDirs(image));
      }),
      t.timed('network', async () => {
        if (!opts.fresh) await rt.delete(rec.id);
        const address = rec.address ?? (await this.assignAddress(rec.id));
        const attachment = await this.deps.network.setUp(this.networkSpec(rec, address));
        this.adopted.add(rec.id);
        return attachment;
      }),
    ]);
    t.mark('setup');
    await rm(p.agentSocket, { force: true });
    await mkdir(p.socketDir, { recursive: true });
    const sandboxEnv = {
      ...Object.fromEntries(image.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
      ...rec.env,
    };
    const memoryImage =
      (await this.hasMemoryImage(rec.id)) && rt.canCheckpoint
        ? this.deps.paths.sandbox(rec.id).checkpointDir
        : undefined;
    const config = {
      id: rec.id,
      rootfsDir,
      bundleDir: p.bundle,
      agentRootDir: this.deps.agentRootDir,
      socketDir: p.socketDir,
      logFile: p.logFile,
      hostname: rec.name ?? rec.id,
      env: { DEN_DEFAULT_USER: image.user, DEN_SANDBOX_ENV: JSON.stringify(sandboxEnv) },
      cpus: rec.cpus,
      memoryMB: rec.memoryMB,
      pids: rec.pids,
      netnsPath: net.netnsPath,
      files: [...net.files, ...(await this.packageCacheMount())],
    };
    let restored = false;
    if (memoryImage) {
      try {
        await rt.run(config, { restoreFrom: memoryImage, removed: true });
        t.mark('restore');
        await this.wakeRestoredAgent(rt, rec.id);
        t.mark('wake');
        restored = true;
      } catch (err) {
        this.deps.log.warn(
          { sandbox: rec.id, err: String(err).slice(0, 500) },
          'restore from the memory image failed; starting fresh',
        );
        await rt.delete(rec.id);
      }
      await rm(memoryImage, { recursive: true, force: true });
    }
    if (!restored) {
      // Fresh or not, no container of this id exists: a fresh sandbox never had one, others were deleted above.
      await rt.run(config, { removed: true });
      t.mark('runtime');
      await this.agent(rec.id).waitReady(AGENT_READY_TIMEOUT_MS);
      t.mark('agent');
      // The first process a sandbox starts is the slowest (measured on runsc: ~50 ms more than the next ones): a
      // pooled sandbox starts one before it counts as ready, so the first exec of whoever takes it is not that one.
      // An image without `true` just skips this.
      if (rec.pooled) {
        await this.agent(rec.id)
          .run({ cmd: ['true'] })
          .catch(() => undefined);
        t.mark('warm-up');
      }
    }
    const updated = await this.deps.store.update(rec.id, {
      state: 'running',
      ...(restored ? {} : { startedAt: new Date().toISOString() }),
      lastError: null,
      pause: null,
    });
    this.deps.log.info({ sandbox: rec.id, runtime: rec.runtime, ms: t.steps }, 'sandbox running');
    this.settled(rec.id);
    return updated!;
  }

  private async ensurePaused(rec: SandboxRecord): Promise<SandboxRecord> {
    const rt = this.runtimeFor(rec.runtime);
    const t = new StepTimer();
    await this.deps.store.update(rec.id, { state: 'pausing' });
    if (!rt.canCheckpoint) {
      return this.finishPause(
        rec,
        false,
        `${rec.runtime} cannot save memory (CRIU does not work on this kernel); the filesystem is kept`,
      );
    }
    const imageDir = this.deps.paths.sandbox(rec.id).checkpointDir;
    await rm(imageDir, { recursive: true, force: true });
    // Nothing of den may hold a connection into the sandbox: gVisor cannot save connected endpoints.
    this.notifyLeaving(rec.id);
    let reason: string | undefined;
    try {
      // gVisor 2024 cannot save a TCP endpoint that is connected or in TIME_WAIT, and a failed checkpoint kills the
      // sandbox: wait briefly for connections to close (den's own were just dropped), else keep the filesystem only.
      const open = await this.openConnections(rec.id);
      if (open.length) {
        const list = open
          .slice(0, 3)
          .map((c) => `${c.local} <-> ${c.remote} ${c.state}`)
          .join(', ');
        throw new NotCheckpointable(
          `the sandbox has open TCP connections gVisor cannot save (${list}${open.length > 3 ? ', ...' : ''})`,
        );
      }
      await this.agent(rec.id).prepareCheckpoint();
      // At once, not gracefully: a graceful close waits for open streams (the output of a process started through den
      // stays attached), and while den's end stays open gVisor keeps the agent's end alive, a host connection it
      // cannot save. Measured: every checkpoint with such a process failed until den's end was destroyed.
      this.agents.get(rec.id)?.destroy();
      this.agents.delete(rec.id);
      await this.socketGone(rec.id);
      t.mark('prepare');
      await rt.checkpoint(rec.id, imageDir);
      t.mark('checkpoint');
    } catch (err) {
      reason =
        err instanceof NotCheckpointable
          ? `memory not saved: ${err.message}; only the filesystem is kept`
          : `the memory checkpoint failed (${firstLine(err)}); only the filesystem is kept`;
      this.deps.log.warn(
        { sandbox: rec.id, err: String(err).slice(0, 2000) },
        'checkpoint failed; pausing without memory',
      );
      await rm(imageDir, { recursive: true, force: true });
    }
    const paused = await this.finishPause(rec, reason === undefined, reason, { later: true });
    t.mark('finish');
    this.deps.log.info({ sandbox: rec.id, memory: reason === undefined, ms: t.steps }, 'sandbox paused');
    return paused;
  }

  /**
   * After a checkpoint (or instead of one): nothing of the sandbox stays on the machine but its disk and image. With
   * `later`, a sandbox whose memory was saved is reported paused at once and its (stopped) container, mounts and
   * network are removed PAUSE_CLEAR_DELAY_MS later, under its lock; a request that wakes it before then neither waits
   * for that nor mounts again. A crash in between is finished by reconcile.
   */
  private async finishPause(
    rec: SandboxRecord,
    memory: boolean,
    reason?: string,
    opts: { later?: boolean } = {},
  ): Promise<SandboxRecord> {
    if (!memory) {
      // Without a memory image the processes must end cleanly: SIGTERM first, as a stop does.
      const stopped = await this.ensureStopped(rec);
      return (await this.deps.store.update(stopped.id, {
        state: 'paused',
        pause: { memory: false, reason: reason ?? 'the filesystem is kept', at: new Date().toISOString() },
      }))!;
    }
    this.dropAgent(rec.id);
    this.pausedTornDown.delete(rec.id);
    if (!opts.later) await this.tearDownPaused(rec);
    const paused = (await this.deps.store.update(rec.id, {
      state: 'paused',
      pause: { memory: true, reason: null, at: new Date().toISOString() },
    }))!;
    if (opts.later) {
      const clear = () =>
        this.locks
          .run(rec.id, async () => {
            // A request that woke it meanwhile (or a delete) reused or removed all of it by itself; a later pause
            // has its own timer.
            const now = await this.deps.store.get(rec.id);
            if (now?.state === 'paused' && now.pause?.at === paused.pause?.at) await this.tearDownPaused(rec);
          })
          .catch((err: unknown) =>
            this.deps.log.warn(
              { sandbox: rec.id, err: String(err) },
              'clearing up after a pause failed; reconcile retries',
            ),
          );
      setTimeout(clear, PAUSE_CLEAR_DELAY_MS).unref();
    }
    return paused;
  }

  /** Removes what a sandbox paused with memory leaves besides its disk and image: container, mounts, network. */
  private async tearDownPaused(rec: SandboxRecord): Promise<void> {
    const rt = this.runtimeFor(rec.runtime);
    const t = new StepTimer();
    await allSettled([
      // The sandbox's processes (the gofer holds the root filesystem) must be gone before the unmount.
      t.timed('container', async () => {
        await rt.delete(rec.id);
        await this.deps.rootfs.unmount(rec.id);
      }),
      t.timed('network', () => this.deps.network.tearDown(rec.id, rec.address)),
    ]);
    this.adopted.delete(rec.id);
    this.pausedTornDown.add(rec.id);
    this.deps.log.info({ sandbox: rec.id, ms: t.steps }, 'paused sandbox cleared from the machine');
  }

  /** The restored agent listens again on SIGUSR2 (restore-wake.ts). */
  private async wakeRestoredAgent(rt: Runtime, id: string): Promise<void> {
    await wakeRestoredAgent({
      signal: () => rt.signal(id, 'SIGUSR2'),
      socketPath: this.deps.paths.sandbox(id).agentSocket,
      ready: (ms) => this.agent(id).waitReady(ms),
      timeoutMs: AGENT_READY_TIMEOUT_MS,
    });
  }

  /**
   * The agent removes its socket file once its listener and every session are closed: only then may the checkpoint
   * start (gVisor cannot save a socket still bound or connected to a host file).
   */
  private async socketGone(id: string): Promise<void> {
    const socket = this.deps.paths.sandbox(id).agentSocket;
    const deadline = Date.now() + 2_000;
    while (
      await stat(socket).then(
        () => true,
        () => false,
      )
    ) {
      if (Date.now() > deadline)
        throw new DenError('AGENT_UNAVAILABLE', 'the agent did not close its socket for the checkpoint');
      await sleep(3);
    }
  }

  /** TCP connections in the sandbox that are still open after up to CONNECTIONS_CLOSE_MS. */
  private async openConnections(id: string) {
    const deadline = Date.now() + CONNECTIONS_CLOSE_MS;
    for (;;) {
      const open = await this.agent(id).listConnections();
      if (open.length === 0 || Date.now() > deadline) return open;
      await sleep(50);
    }
  }

  private async hasMemoryImage(id: string): Promise<boolean> {
    try {
      return (await stat(join(this.deps.paths.sandbox(id).checkpointDir, 'checkpoint.img'))).size > 0;
    } catch {
      return false;
    }
  }

  private async ensureStopped(rec: SandboxRecord): Promise<SandboxRecord> {
    const rt = this.runtimeFor(rec.runtime);
    const t = new StepTimer();
    await this.deps.store.update(rec.id, { state: 'stopping' });
    this.dropAgent(rec.id);
    this.notifyLeaving(rec.id);
    const st = await rt.state(rec.id);
    if (st?.status === 'running') {
      // SIGTERM reaches tini, which forwards it to the agent; the agent ends its processes and exits.
      await rt.kill(rec.id, 'SIGTERM');
      const deadline = Date.now() + STOP_GRACE_MS;
      while (Date.now() < deadline && (await rt.state(rec.id))?.status === 'running') await sleep(20);
    }
    t.mark('terminate');
    await rt.delete(rec.id);
    t.mark('delete');
    await this.deps.network.tearDown(rec.id, rec.address);
    this.adopted.delete(rec.id);
    t.mark('network');
    await this.deps.rootfs.unmount(rec.id);
    t.mark('unmount');
    // A memory image of an earlier pause is stale once the sandbox was stopped: the next start is a fresh boot.
    await rm(this.deps.paths.sandbox(rec.id).checkpointDir, { recursive: true, force: true });
    this.deps.log.info({ sandbox: rec.id, ms: t.steps }, 'sandbox stopped');
    const stopped = (await this.deps.store.update(rec.id, { state: 'stopped', pause: null }))!;
    this.settled(rec.id);
    return stopped;
  }

  private async ensureDeleted(rec: SandboxRecord): Promise<void> {
    this.dropAgent(rec.id);
    this.notifyLeaving(rec.id);
    const rt = this.deps.runtimes[rec.runtime];
    if (rt) await rt.delete(rec.id);
    await this.deps.network.tearDown(rec.id, rec.address);
    this.adopted.delete(rec.id);
    await this.deps.rootfs.destroy(rec.id);
    await rm(this.deps.paths.sandbox(rec.id).dir, { recursive: true, force: true });
    await this.deps.store.delete(rec.id);
    this.settled(rec.id);
  }

  // ---- helpers ----

  private async packageCacheMount(): Promise<{ source: string; destination: string }[]> {
    const dir = this.deps.packageCacheDir;
    if (!dir || !(await isDirectory(dir))) return [];
    return [{ source: dir, destination: PACKAGE_CACHE_MOUNT }];
  }

  private networkSpec(rec: SandboxRecord, address: string) {
    return { sandboxId: rec.id, address, hostname: rec.name ?? rec.id, network: rec.network };
  }

  private async addressesInUse(): Promise<string[]> {
    return (await this.deps.store.list()).flatMap((r) => (r.address ? [r.address] : []));
  }

  /** For sandboxes created before den had networking: they get an address at their next start. */
  private async assignAddress(id: string): Promise<string> {
    return this.locks.run(ADDRESS_LOCK, async () => {
      const address = this.deps.network.allocateAddress(await this.addressesInUse());
      await this.deps.store.update(id, { address, ...(await this.missingToken(id)) });
      return address;
    });
  }

  private async missingToken(id: string): Promise<{ previewToken?: string }> {
    return (await this.deps.store.get(id))?.previewToken ? {} : { previewToken: newPreviewToken() };
  }

  private agent(id: string): AgentConnection {
    let agent = this.agents.get(id);
    if (!agent) {
      agent = this.deps.connectAgent(this.deps.paths.sandbox(id).agentSocket);
      this.agents.set(id, agent);
    }
    return agent;
  }

  private dropAgent(id: string): void {
    this.agents.get(id)?.close();
    this.agents.delete(id);
  }

  private runtimeFor(name: RuntimeName): Runtime {
    const rt = this.deps.runtimes[name];
    if (!rt) {
      const available = Object.keys(this.deps.runtimes).join(', ') || 'none';
      throw new DenError(
        'RUNTIME_UNAVAILABLE',
        `runtime "${name}" is not available on this machine (available: ${available})`,
      );
    }
    return rt;
  }

  private checkName(name: string): void {
    if (!isSandboxName(name))
      throw new DenError('INVALID_ARGUMENT', `name "${name}" is not valid: ${SANDBOX_NAME_HINT}`);
    if (isSandboxId(name)) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `name "${name}" looks like a sandbox id: add a hyphen or change its length`,
      );
    }
  }

  private checkHostCapacity(cpus: number, memoryMB: number): void {
    const cores = availableParallelism();
    if (cpus > cores) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `cpus ${cpus} is more than this machine's ${cores} cores: use --cpus ${cores} or less`,
      );
    }
    const hostMB = Math.floor(totalmem() / 1024 / 1024);
    if (memoryMB > hostMB) {
      throw new DenError(
        'INVALID_ARGUMENT',
        `memory ${memoryMB} MB is more than this machine's ${hostMB} MB: use a smaller --memory`,
      );
    }
  }
}

/** The API view of a sandbox; `previewDomain` is what preview hosts end with (PreviewUrls.domainWithPort). */
export function toSandbox(rec: SandboxRecord, previewDomain: string): Sandbox {
  const { address, network, previewPublic, previewToken, envdAccessToken: _secret, ...rest } = rec;
  return {
    ...rest,
    network: { policy: network.policy, allow: network.allow, address },
    preview: { public: previewPublic, token: previewToken, domain: previewDomain },
  };
}

/**
 * States in which a request waits for the sandbox instead of failing: it is paused (the request resumes it) or a
 * start is under way (the request queues behind it on the sandbox's lock and finds it running).
 */
const WAKEABLE_STATES = new Set<SandboxState>(['paused', 'pausing', 'starting', 'creating']);

/** Where sandboxes see the shared package cache (read-only). */
export const PACKAGE_CACHE_MOUNT = '/opt/den-cache';

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The moment a timeout of `timeoutMs` from now passes; null for no timeout (undefined or 0). */
function timeoutAtFrom(timeoutMs: number | undefined): string | null {
  return timeoutMs ? new Date(Date.now() + timeoutMs).toISOString() : null;
}

function toStoredAction(action: OnTimeoutAction | undefined): SandboxRecord['onTimeout'] {
  return action ?? 'delete';
}

/** Key of the lock under which a create takes a sandbox out of the warm pool. */
const POOL_LOCK = 'warm-pool';

/** Key of the lock that makes choosing an address and storing it one step. */
const ADDRESS_LOCK = 'address-allocation';

/** What gVisor would refuse to checkpoint, found before trying (a failed checkpoint kills the sandbox). */
class NotCheckpointable extends Error {}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const m = /(Cannot save[^\n:]*|cannot be saved[^\n]*|[^\n]{0,200})/.exec(text);
  return (m?.[1] ?? text).trim();
}

function newPreviewToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Promise.all that waits for every promise to settle before it rejects (nothing keeps running behind an error). */
async function allSettled<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Durations of the steps of one operation, for the log (where start and stop spend their time). */
class StepTimer {
  readonly steps: Record<string, number> = {};
  private last = performance.now();

  mark(step: string): void {
    const now = performance.now();
    this.steps[step] = Math.round(now - this.last);
    this.last = now;
  }

  /** Times a step that runs beside others: its own duration (the next `mark` covers the whole parallel part). */
  async timed<T>(step: string, run: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await run();
    } finally {
      this.steps[step] = Math.round(performance.now() - start);
    }
  }
}
