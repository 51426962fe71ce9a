import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CreateSandboxRequest,
  DenError,
  type Image,
  isSandboxId,
  LIMITS,
  type NetworkSettings,
  newSandboxId,
  type OnTimeoutAction,
  type Sandbox,
  type SandboxState,
} from '@den/shared';
import { pathExists } from '../fs-util.js';
import type { DenPaths } from '../paths.js';
import { allSettledOrThrow } from '../settle.js';
import type { ActivityTracker } from './activity.js';
import { KeyedMutex } from './keyed-mutex.js';
import { checkpointFailure, connectionsClosedNote, MemoryCheckpoint } from './memory-checkpoint.js';
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
import { checkHostCapacity, checkSandboxName } from './sandbox-checks.js';
import { StepTimer } from './step-timer.js';

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
  /** told about calls that use a sandbox (idle auto-pause); optional */
  activity?: ActivityTracker;
}

/** How long a fresh container's agent has to answer before the start counts as failed. */
const AGENT_READY_TIMEOUT_MS = 20_000;
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
  /**
   * sandboxes paused with memory whose container, mounts and network this daemon process has removed (a resume need
   * not look for the container)
   */
  private readonly pausedTornDown = new Set<string>();
  /**
   * the removal of a checkpointed sandbox's stopped container, started as soon as the checkpoint is written (a
   * resume then finds it done instead of spending ~30 ms on it); resolves to whether it succeeded
   */
  private readonly containerRemovals = new Map<string, Promise<boolean>>();
  /** sandboxes whose network rules this daemon process has applied */
  private readonly adopted = new Set<string>();
  private poolListener: ((image: string, runtime: RuntimeName) => void) | undefined;
  private readonly previewListeners: ((sandboxId: string) => void)[] = [];
  /** streams waiting across a pause: called whenever a sandbox ends up running, stopped or deleted */
  private readonly settleWaiters = new Map<string, Set<() => void>>();
  /** called before a sandbox stops or is deleted (the preview proxy drops its pooled connections into it) */
  private readonly leaveListeners: ((sandboxId: string) => void)[] = [];

  private readonly checkpoints: MemoryCheckpoint;

  constructor(private readonly deps: SandboxServiceDeps) {
    this.checkpoints = new MemoryCheckpoint(deps.paths, (id) => this.agent(id), AGENT_READY_TIMEOUT_MS);
  }

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

  /** Ids (or names) of every sandbox on this machine made from `image`, pooled ones included. */
  async usingImage(image: string): Promise<string[]> {
    return (await this.deps.store.list()).filter((r) => r.image === image).map((r) => r.name ?? r.id);
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
    this.deps.activity?.touch(rec.id);
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
    options: { envdAccessToken?: string; pooled?: boolean; fillDisk?: DiskFiller } = {},
  ): Promise<SandboxRecord> {
    if (!options.pooled && !options.fillDisk) {
      const claimed = await this.claimPooled(req, options);
      if (claimed) return claimed;
    }
    const runtime = req.runtime ?? this.deps.defaultRuntime;
    this.runtimeFor(runtime);
    const image = req.image ?? 'base';
    await this.deps.images.get(image);
    if (req.name !== undefined) checkSandboxName(req.name);
    const cpus = req.cpus ?? LIMITS.cpus.default;
    const memoryMB = req.memoryMB ?? LIMITS.memoryMB.default;
    checkHostCapacity(cpus, memoryMB);
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
      idleTimeoutMs: req.idleTimeoutMs || null,
      lastActivityAt: null,
    };
    if (options.fillDisk) {
      // A sandbox made from a snapshot is marked before its row exists: until its disk is filled, reconcile removes
      // it after a crash instead of booting it on the bare image (a directory without a row is a stray, removed too).
      const p = this.deps.paths.sandbox(rec.id);
      await mkdir(p.dir, { recursive: true });
      await writeFile(p.fillingMarker, '');
    }
    // The row goes in first: whatever exists on the machine for a sandbox always has a row, so a crash at any
    // later point is finished (or cleaned up) by reconcile. The address is chosen and stored in one step.
    await this.locks.run(ADDRESS_LOCK, async () => {
      rec.address = this.deps.network.allocateAddress(await this.addressesInUse());
      await this.deps.store.insert(rec);
    });
    return this.locks.run(rec.id, async () => {
      try {
        return await this.ensureRunning(rec, { fresh: true, fillDisk: options.fillDisk });
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
      checkSandboxName(req.name);
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
          const image = await this.deps.images.get(picked.image);
          await this.agent(picked.id).setSandboxEnv({ ...envOf(image), ...req.env });
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
          idleTimeoutMs: req.idleTimeoutMs || null,
          lastActivityAt: new Date().toISOString(),
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

  /**
   * Pauses a running sandbox. runsc: its memory and processes are checkpointed (they continue where they were on
   * resume; connections they held to the outside are reset, and `pause.reason` names them); if the checkpoint fails,
   * or on runc (CRIU does not work on these kernels), only the filesystem is kept and `pause.memory` is false with
   * the reason. A paused sandbox uses no CPU or memory: no container, mount or network namespace remains.
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

  /**
   * Runs `fn` while the sandbox's files hold still and its overlay upper dir can be read (snapshots, images), under
   * the sandbox's lock. A running runsc sandbox is checkpointed for that (its memory image is handed to `fn` too) and
   * restored afterwards, so its processes continue; a running runc sandbox is frozen and thawed; a stopped or paused
   * one has just its disk mounted. A crash in between leaves the sandbox desired running: reconcile restores it.
   */
  async holdStill<T>(ref: string, fn: (held: HeldSandbox) => Promise<T>): Promise<T> {
    const rec = await this.resolve(ref);
    return this.locks.run(rec.id, async () => {
      const current = await this.resolve(rec.id);
      const rt = this.runtimeFor(current.runtime);
      if (current.state === 'running') {
        const memoryBlocker = rt.canCheckpoint
          ? await this.checkpoints.snapshotBlocker(current.id)
          : `${current.runtime} cannot save memory (CRIU does not work on this kernel)`;
        if (memoryBlocker !== undefined) return this.withFrozen(current, memoryBlocker, fn);
        const paused = await this.ensurePaused(current);
        try {
          return await fn(await this.heldFiles(paused));
        } finally {
          await this.ensureRunning((await this.deps.store.get(current.id))!);
        }
      }
      if (current.state !== 'stopped' && current.state !== 'paused') {
        throw new DenError(
          'SANDBOX_BUSY',
          `sandbox ${current.name ?? current.id} is ${current.state}; try again when it is running, paused or stopped`,
          { state: current.state },
        );
      }
      // A sandbox paused a moment ago may still have its stopped container and mounts (cleared after a delay):
      // cleared now, so the disk is mounted on its own and nothing is left once `fn` is done.
      if (current.pause?.memory && !this.pausedTornDown.has(current.id)) await this.tearDownPaused(current);
      try {
        return await fn(await this.heldFiles(current));
      } finally {
        await this.deps.rootfs.unmount(current.id);
      }
    });
  }

  /**
   * The files of a running sandbox whose memory cannot be saved, held still without stopping it: gVisor's sentry
   * writes cached file data back on `sync`; then the container is frozen (cgroup freezer) while `fn` reads.
   */
  private async withFrozen<T>(rec: SandboxRecord, memoryNotSaved: string, fn: (h: HeldSandbox) => Promise<T>) {
    const rt = this.runtimeFor(rec.runtime);
    if (rt.canCheckpoint) await this.agent(rec.id).run({ cmd: ['sync'], user: 'root', timeoutMs: 60_000 });
    await rt.freeze(rec.id);
    try {
      return await fn({ record: rec, upperDir: await this.deps.rootfs.mountDisk(rec.id), memoryNotSaved });
    } finally {
      await rt.thaw(rec.id);
    }
  }

  private async heldFiles(rec: SandboxRecord): Promise<HeldSandbox> {
    const upperDir = await this.deps.rootfs.mountDisk(rec.id);
    const memory = (await this.checkpoints.hasImage(rec.id))
      ? this.deps.paths.sandbox(rec.id).checkpointDir
      : undefined;
    return { record: rec, upperDir, ...(memory ? { memoryDir: memory } : {}) };
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

  /** Changes the idle timeout (0 = none) and/or the timeout action of a sandbox; the idle clock restarts now. */
  async updateLifecycle(
    ref: string,
    settings: { idleTimeoutMs?: number; onTimeout?: OnTimeoutAction },
  ): Promise<SandboxRecord> {
    const rec = await this.resolve(ref);
    const patch: Partial<SandboxRecord> = {};
    if (settings.idleTimeoutMs !== undefined) {
      patch.idleTimeoutMs = settings.idleTimeoutMs || null;
      patch.lastActivityAt = new Date().toISOString();
      this.deps.activity?.touch(rec.id);
    }
    if (settings.onTimeout !== undefined) patch.onTimeout = toStoredAction(settings.onTimeout);
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
        if (await pathExists(this.deps.paths.sandbox(id).fillingMarker)) {
          this.deps.log.warn(
            { sandbox: id },
            'removing a sandbox whose files were still being restored from a snapshot',
          );
          await this.deps.store.update(id, { desiredState: 'deleted', state: 'deleting' });
          await this.ensureDeleted(rec);
          return;
        }
        if (rec.desiredState === 'deleted') await this.ensureDeleted(rec);
        else if (rec.desiredState === 'stopped') {
          if (rec.state !== 'stopped') await this.ensureStopped(rec);
        } else if (rec.desiredState === 'paused') {
          // A pause interrupted by a crash: what is left is stopped; a memory image, if complete, stays usable.
          if (rec.state !== 'paused') await this.finishPause(rec, await this.checkpoints.hasImage(rec.id));
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
  private async ensureRunning(
    rec: SandboxRecord,
    opts: { fresh?: boolean; fillDisk?: DiskFiller } = {},
  ): Promise<SandboxRecord> {
    const { rootfs, images, paths } = this.deps;
    const rt = this.runtimeFor(rec.runtime);
    const p = paths.sandbox(rec.id);
    const t = new StepTimer();
    if (rec.state !== 'creating') await this.deps.store.update(rec.id, { state: 'starting' });
    const image = await images.get(rec.image);
    await mkdir(p.dir, { recursive: true });
    this.dropAgent(rec.id);
    const address = rec.address ?? (await this.assignAddress(rec.id));
    // The disk and overlay, and the old container's removal followed by the network namespace, do not depend on each
    // other: they are done at the same time.
    const [rootfsDir, net] = await allSettledOrThrow([
      t.timed('disk', async () => {
        await rootfs.ensureDisk(rec.id, rec.diskMB);
        if (opts.fillDisk) {
          // A sandbox made from a snapshot: its files (and memory image) are in place before the overlay is mounted;
          // then the marker written by `create` goes (from here on, reconcile finishes it after a crash).
          await opts.fillDisk({ upperDir: await rootfs.mountDisk(rec.id), checkpointDir: p.checkpointDir });
          await rm(p.fillingMarker, { force: true });
        }
        return rootfs.mount(rec.id, images.layerDirs(image));
      }),
      t.timed('network', async () => {
        const spec = this.networkSpec(rec, address);
        // A fresh sandbox never had a container; the container of one paused with memory may be cleared already.
        if (opts.fresh || this.pausedTornDown.has(rec.id)) return this.deps.network.setUp(spec);
        if (!(await this.containerRemoved(rec.id))) await rt.delete(rec.id);
        // Paused with memory a moment ago: its namespace is still in place.
        const kept = rec.state === 'paused' && rec.pause?.memory === true;
        return kept ? this.deps.network.reattach(spec) : this.deps.network.setUp(spec);
      }),
    ] as const);
    this.pausedTornDown.delete(rec.id);
    this.adopted.add(rec.id);
    t.mark('prepare');
    await rm(p.agentSocket, { force: true });
    await mkdir(p.socketDir, { recursive: true });
    const sandboxEnv = {
      ...envOf(image),
      ...rec.env,
    };
    const memoryImage = rt.canCheckpoint && (await this.checkpoints.hasImage(rec.id)) ? p.checkpointDir : undefined;
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
        await this.checkpoints.wakeRestoredAgent(rt, rec.id);
        t.mark('wake');
        restored = true;
      } catch (err) {
        this.deps.log.warn(
          { sandbox: rec.id, err: String(err).slice(0, 500) },
          'restore from the memory image failed; starting fresh',
        );
        await rt.delete(rec.id);
        // runsc took the address and route out of the namespace before it failed: the fresh boot needs them back.
        await this.deps.network.reattach(this.networkSpec(rec, address));
      }
      await rm(memoryImage, { recursive: true, force: true });
    }
    if (!restored) {
      // Fresh or not, no container of this id exists: a fresh sandbox never had one, others were deleted above.
      await rt.run(config, { removed: true });
      t.mark('runtime');
    }
    await this.agent(rec.id).waitReady(AGENT_READY_TIMEOUT_MS);
    t.mark('agent');
    if (rec.pooled) {
      // A warm-pool sandbox runs one process before it counts as running (only then can a create take it): the first
      // process of a fresh gVisor sandbox loads the agent's spawn path and libc into its caches (measured: first exec
      // ~115 ms, then ~25). An image without `true` just skips this. The agent warms itself the same way when it
      // starts (agent warm-up.ts), but without waiting; this run is what guarantees a claimed sandbox is warm.
      await this.agent(rec.id)
        .run({ cmd: ['true'] })
        .catch(() => undefined);
      t.mark('warm-up');
    }
    // A start or resume counts as activity: an idle timeout runs from here.
    this.deps.activity?.touch(rec.id);
    const updated = await this.deps.store.update(rec.id, {
      state: 'running',
      ...(restored && rec.startedAt ? {} : { startedAt: new Date().toISOString() }),
      lastError: null,
      pause: null,
      lastActivityAt: new Date().toISOString(),
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
    // den's own connections into the sandbox (preview proxy, attached clients) end before it is saved.
    this.notifyLeaving(rec.id);
    let reason: string | undefined;
    let note: string | null = null;
    try {
      // The checkpoint resets the connections the sandbox holds to the outside (runsc.ts `--net-disconnect-ok`), as a
      // laptop's sleep would; the pause says which.
      note = connectionsClosedNote(await this.checkpoints.outsideConnections(rec.id));
      await this.agent(rec.id).prepareCheckpoint();
      // At once, not gracefully: a graceful close waits for open streams (the output of a process started through den
      // stays attached), and while den's end stays open gVisor keeps the agent's end alive, a host connection it
      // cannot save. Measured: every checkpoint with such a process failed until den's end was destroyed.
      this.destroyAgent(rec.id);
      await this.checkpoints.socketGone(rec.id);
      t.mark('prepare');
      await rt.checkpoint(rec.id, imageDir);
      t.mark('checkpoint');
      this.removeContainerSoon(rec);
    } catch (err) {
      reason = `the memory checkpoint failed (${checkpointFailure(err)}); only the filesystem is kept`;
      this.deps.log.warn(
        { sandbox: rec.id, err: String(err).slice(0, 2000) },
        'checkpoint failed; pausing without memory',
      );
      await rm(imageDir, { recursive: true, force: true });
    }
    const paused = await this.finishPause(rec, reason === undefined, reason ?? note ?? undefined, { later: true });
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
      pause: { memory: true, reason: reason ?? null, at: new Date().toISOString() },
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

  /** Starts removing the stopped container of a sandbox whose checkpoint was just written, without waiting. */
  private removeContainerSoon(rec: SandboxRecord): void {
    const removal = this.runtimeFor(rec.runtime)
      .delete(rec.id)
      .then(
        () => true,
        (err: unknown) => {
          this.deps.log.warn({ sandbox: rec.id, err: String(err) }, 'removing the checkpointed container failed');
          return false;
        },
      );
    this.containerRemovals.set(rec.id, removal);
  }

  /** Waits for a removal started by removeContainerSoon; false when none was started or it failed. */
  private async containerRemoved(id: string): Promise<boolean> {
    const removal = this.containerRemovals.get(id);
    this.containerRemovals.delete(id);
    return (await removal) ?? false;
  }

  /** Removes what a sandbox paused with memory leaves besides its disk and image: container, mounts, network. */
  private async tearDownPaused(rec: SandboxRecord): Promise<void> {
    const t = new StepTimer();
    await allSettledOrThrow([
      // The sandbox's processes (the gofer holds the root filesystem) must be gone before the unmount.
      t.timed('container', async () => {
        if (!(await this.containerRemoved(rec.id))) await this.runtimeFor(rec.runtime).delete(rec.id);
        await this.deps.rootfs.unmount(rec.id);
      }),
      t.timed('network', () => this.deps.network.tearDown(rec.id, rec.address)),
    ]);
    this.adopted.delete(rec.id);
    this.pausedTornDown.add(rec.id);
    this.deps.log.info({ sandbox: rec.id, ms: t.steps }, 'paused sandbox cleared from the machine');
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
    this.deps.activity?.forget(rec.id);
    this.notifyLeaving(rec.id);
    const rt = this.deps.runtimes[rec.runtime];
    // A sandbox deleted right after a pause: the removal of its checkpointed container may still be under way.
    if (rt && !(await this.containerRemoved(rec.id))) await rt.delete(rec.id);
    await this.deps.network.tearDown(rec.id, rec.address);
    this.adopted.delete(rec.id);
    this.pausedTornDown.delete(rec.id);
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
      agent = this.deps.connectAgent(this.deps.paths.sandbox(id).agentSocket, id);
      this.agents.set(id, agent);
    }
    return agent;
  }

  private dropAgent(id: string): void {
    this.agents.get(id)?.close();
    this.agents.delete(id);
  }

  private destroyAgent(id: string): void {
    this.agents.get(id)?.destroy();
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

/** A sandbox held still by `holdStill`: its record, its overlay upper dir, and its memory image when it has one. */
export interface HeldSandbox {
  record: SandboxRecord;
  upperDir: string;
  memoryDir?: string;
  /** why a running sandbox's memory is not part of it */
  memoryNotSaved?: string;
}

/** Puts a new sandbox's files (its overlay upper dir) and memory image in place before its first start. */
export type DiskFiller = (target: { upperDir: string; checkpointDir: string }) => Promise<void>;

/**
 * States in which a request waits for the sandbox instead of failing: it is paused (the request resumes it) or a
 * start is under way (the request queues behind it on the sandbox's lock and finds it running).
 */
const WAKEABLE_STATES = new Set<SandboxState>(['paused', 'pausing', 'starting', 'creating']);

/** An image's `KEY=VALUE` environment list as a map. */
function envOf(image: Image): Record<string, string> {
  return Object.fromEntries(image.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

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

function newPreviewToken(): string {
  return randomBytes(24).toString('base64url');
}
