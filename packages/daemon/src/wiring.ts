import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '@den/agent/client';
import { LIMITS } from '@den/shared';
import type { FastifyInstance, FastifyServerFactory } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { createApp } from './api/app.js';
import type { DaemonConfig } from './config.js';
import { CgroupSandboxMetrics } from './e2b/control/index.js';
import { createEnvdHandler } from './e2b/envd/index.js';
import { daemonServer } from './http-server.js';
import { BridgeNetwork } from './net/bridge-network.js';
import { dnsUpstreams, sandboxDns } from './net/sandbox-dns.js';
import { denPaths } from './paths.js';
import { PreviewProxy } from './proxy/preview-proxy.js';
import { CachedPreviewResolver } from './proxy/target-cache.js';
import { ensureAgentRoot } from './runtime/agent-root.js';
import { cgroupCpuTimeNs, cgroupDirs } from './runtime/cgroups.js';
import { cgroupPath } from './runtime/oci-spec.js';
import { RuncRuntime } from './runtime/runc.js';
import { RunscRuntime } from './runtime/runsc.js';
import { ActivityTracker } from './services/activity.js';
import { ApiKeyService } from './services/api-keys.js';
import { AppPreviewService } from './services/app-preview/app-service.js';
import { IdleService } from './services/idle.js';
import { ImageService } from './services/images.js';
import type { ObjectStore, Runtime, RuntimeName } from './services/ports.js';
import { PreviewUrls } from './services/preview-urls.js';
import { PACKAGE_CACHE_MOUNT, SandboxService } from './services/sandbox-service.js';
import { SnapshotService } from './services/snapshots.js';
import { StatusService } from './services/status-service.js';
import { TimeoutService } from './services/timeouts.js';
import { parsePoolSpecs, WarmPool } from './services/warm-pool.js';
import { ImageStore } from './storage/image-store.js';
import { openObjectStore } from './storage/object-store/index.js';
import { LoopOverlayRootfs } from './storage/rootfs.js';
import { SnapshotArchive } from './storage/snapshot-archive.js';
import { SpareDisks } from './storage/spare-disks.js';
import { KyselyApiKeyStore } from './store/api-key-store.js';
import { openDatabase } from './store/database.js';
import { KyselySandboxStore } from './store/sandbox-store.js';
import { startToolSpawner } from './tool-spawn.js';

/** Formatted disks of the default size kept ready (storage/spare-disks.ts): enough for a burst of creates. */
const SPARE_DISKS = 2;

/** The repository root: the agent root is built from the compiled agent and shared packages in it. */
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

export interface Daemon {
  app: FastifyInstance;
  sandboxes: SandboxService;
  /** where snapshots go (local directory or S3-compatible bucket, DaemonConfig.objectStore) */
  objects: ObjectStore;
  /** stops timers and closes connections and the database; sandboxes keep running */
  close(): Promise<void>;
}

/** The composition root: builds every adapter and service from the config. No DI framework. */
export async function wire(config: DaemonConfig, log: PinoLogger): Promise<Daemon> {
  const paths = denPaths(config.home, config.store);
  await mkdir(paths.sandboxesDir, { recursive: true });
  if (!startToolSpawner(paths.toolSpawnDir)) log.warn('den-spawn is not built: tools are started with Node spawn');
  const database = await openDatabase({ sqlitePath: paths.database, postgresUrl: config.databaseUrl });

  const candidates: { name: RuntimeName; runtime: Runtime }[] = [
    { name: 'runsc', runtime: new RunscRuntime({ binary: config.runscPath, root: paths.runtimeRoot('runsc') }) },
    { name: 'runc', runtime: new RuncRuntime({ binary: config.runcPath, root: paths.runtimeRoot('runc') }) },
  ];
  const probed = await Promise.all(
    candidates.map(async (c) => {
      try {
        return { ...c, version: await c.runtime.version(), ok: true };
      } catch {
        return { ...c, version: null, ok: false };
      }
    }),
  );
  const runtimes: Partial<Record<RuntimeName, Runtime>> = {};
  for (const p of probed) if (p.ok) runtimes[p.name] = p.runtime;

  // Settings that can be wrong are checked before anything is made on the host.
  const poolSpecs = parsePoolSpecs(config.warmPool);
  const network = new BridgeNetwork({
    bridge: config.networkBridge,
    subnet: config.networkSubnet,
    deny: config.networkDeny,
    filesDir: (id) => paths.sandbox(id).netDir,
    log,
  });
  await network.start();
  try {
    const dns = sandboxDns(network, dnsUpstreams(config.dnsUpstreams), log);
    await dns.start();

    const images = new ImageStore(config.store);
    const objects = await openObjectStore(config.objectStore);
    const activity = new ActivityTracker();
    const sandboxStore = new KyselySandboxStore(database.db);
    const spareDisks = new SpareDisks(paths.spareDisksDir, LIMITS.diskMB.default, SPARE_DISKS, (err) =>
      log.warn({ err: String(err) }, 'making spare disks failed; new disks are formatted on the spot'),
    );
    spareDisks.refill();
    const sandboxes = new SandboxService({
      store: sandboxStore,
      runtimes,
      rootfs: new LoopOverlayRootfs(paths, spareDisks),
      network,
      defaultNetwork: network.normalize(config.defaultNetwork),
      images,
      connectAgent: (socketPath, sandboxId) =>
        new AgentClient(socketPath, { onSession: () => activity.openSession(sandboxId) }),
      activity,
      paths,
      agentRootDir: await ensureAgentRoot(paths.agentRootsDir, REPO_ROOT),
      packageCacheDir: join(config.store, 'cache'),
      defaultRuntime: config.defaultRuntime,
      log,
    });
    const status = new StatusService({
      sandboxes,
      images,
      runtimes: probed.map((p) => ({ name: p.name, runtime: p.ok ? p.runtime : undefined, version: p.version })),
      database: database.description,
    });
    const previews = new PreviewUrls(config.previewDomain);
    const envd = createEnvdHandler({ sandboxes, previewDomain: config.previewDomain });
    const previewTargets = new CachedPreviewResolver({ resolve: (ref, port) => sandboxes.previewTarget(ref, port) });
    const proxy = new PreviewProxy({
      domain: config.previewDomain,
      resolver: previewTargets,
      log,
      fastLane: { reserved: (head) => envd.matches(head) },
      onActivity: (id) => activity.touch(id),
    });
    sandboxes.onPreviewChange((id) => previewTargets.forget(id));
    sandboxes.onLeaving((id) => {
      previewTargets.forget(id);
      proxy.dropConnections(id);
    });
    const app = await createApp(
      {
        sandboxes,
        status,
        previews,
        apps: new AppPreviewService({
          agentFor: (ref) => sandboxes.agentFor(ref),
          previewDomain: config.previewDomain,
          cacheDir: PACKAGE_CACHE_MOUNT,
        }),
        apiKeys: new ApiKeyService(new KyselyApiKeyStore(database.db)),
        snapshots: new SnapshotService({ archive: new SnapshotArchive(objects), objects, sandboxes, images }),
        images: new ImageService(images, sandboxes),
        e2b: {
          templateAliases: config.e2bTemplateAliases,
          metrics: new CgroupSandboxMetrics((id) => paths.sandbox(id).diskMount),
        },
      },
      { logger: log, serverFactory: daemonServer(proxy, envd) as unknown as FastifyServerFactory },
    );
    app.addHook('onListen', async () => {
      const address = app.server.address();
      if (address && typeof address === 'object') previews.setOrigin(address.address, address.port);
    });

    await sandboxes.reconcileAll({ removeStrays: true });
    const timer = setInterval(() => {
      void sandboxes
        .reconcileAll({ removeStrays: false })
        .catch((err: unknown) => app.log.error({ err }, 'reconcile failed'));
    }, config.reconcileIntervalMs);
    timer.unref();
    // After the first reconcile, so an expired sandbox is deleted or stopped from a known state.
    const timeouts = new TimeoutService({ store: sandboxStore, sandboxes, log });
    timeouts.start();
    const pool = new WarmPool(sandboxes, poolSpecs, log);
    pool.start();
    const idle = new IdleService({
      store: sandboxStore,
      sandboxes,
      activity,
      cpuTimeNs: (id) => cgroupDirs(cgroupPath(id)).then(cgroupCpuTimeNs),
      log,
      intervalMs: config.idleCheckIntervalMs,
    });
    idle.start();

    return {
      app,
      sandboxes,
      objects,
      async close() {
        clearInterval(timer);
        await timeouts.stop();
        await idle.stop();
        pool.stop();
        await app.close();
        proxy.close();
        envd.close();
        await sandboxes.shutdown();
        await dns.close();
        // With no sandbox left, den leaves nothing on the host: no bridge, no nft tables.
        if (!(await sandboxes.anyOnMachine())) await network.removeHostNetwork();
        await database.db.destroy();
        await objects.close();
      },
    };
  } catch (err) {
    // A daemon that fails to start must not leave its bridge and nft tables behind when it has no sandbox.
    const rows = await database.db
      .selectFrom('sandboxes')
      .select('id')
      .limit(1)
      .execute()
      .catch(() => [{ id: 'unknown' }]);
    if (rows.length === 0) await network.removeHostNetwork().catch(() => undefined);
    throw err;
  }
}
