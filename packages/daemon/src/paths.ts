import { join } from 'node:path';

/**
 * Where everything of one daemon lives. `home` is the data directory (--home / DEN_HOME): database, per-sandbox
 * dirs, runtime state roots. `store` holds content-addressed image layers and image manifests; it may be shared
 * by several daemons (tests share the one the install step fills).
 */
export interface DenPaths {
  home: string;
  store: string;
  database: string;
  sandboxesDir: string;
  /** formatted disks made ahead (storage/spare-disks.ts); on the sandboxes' filesystem, so they move by rename */
  spareDisksDir: string;
  runtimeRoot(runtime: 'runsc' | 'runc'): string;
  /** den-spawn's socket directory for the tools the daemon starts (tool-spawn.ts); root only */
  toolSpawnDir: string;
  agentRootsDir: string;
  sandbox(id: string): SandboxPaths;
}

export interface SandboxPaths {
  dir: string;
  /** sparse ext4 file holding the persistent upper layer */
  diskFile: string;
  /** mount point of diskFile; contains upper/ and work/ */
  diskMount: string;
  rootfs: string;
  bundle: string;
  /** bind-mounted at /run/den in the sandbox; holds agent.sock */
  socketDir: string;
  agentSocket: string;
  logFile: string;
  /** generated /etc files (resolv.conf, hosts) bind-mounted into the sandbox */
  netDir: string;
  /** runsc checkpoint image while the sandbox is paused with memory */
  checkpointDir: string;
  /** exists while the sandbox's disk is being filled from a snapshot: after a crash, reconcile removes the sandbox */
  fillingMarker: string;
}

export function denPaths(home: string, store: string): DenPaths {
  const sandboxesDir = join(home, 'sandboxes');
  return {
    home,
    store,
    database: join(home, 'den.db'),
    sandboxesDir,
    spareDisksDir: join(home, 'spare-disks'),
    runtimeRoot: (runtime) => join(home, 'run', runtime),
    toolSpawnDir: join(home, 'run', 'tools'),
    agentRootsDir: join(store, 'agent'),
    sandbox(id) {
      // Short names: the socket path must stay under the 108-byte sun_path limit.
      const dir = join(sandboxesDir, id);
      return {
        dir,
        diskFile: join(dir, 'disk.ext4'),
        diskMount: join(dir, 'disk'),
        rootfs: join(dir, 'rootfs'),
        bundle: join(dir, 'bundle'),
        socketDir: join(dir, 'sock'),
        agentSocket: join(dir, 'sock', 'agent.sock'),
        logFile: join(dir, 'agent.log'),
        netDir: join(dir, 'net'),
        checkpointDir: join(dir, 'checkpoint'),
        fillingMarker: join(dir, 'filling-from-snapshot'),
      };
    },
  };
}
