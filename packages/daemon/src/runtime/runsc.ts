import { join } from 'node:path';
import type { ContainerConfig, RuntimeName } from '../services/ports.js';
import { cgroupProcs, destroyCgroup } from './cgroups.js';
import { ensureDir, OciRuntime, type OciRuntimeOptions } from './oci-runtime.js';
import { cgroupPath } from './oci-spec.js';

/** The 2024-07-29 gVisor release den installs (RUNTIME-NOTES: Debian 12's 2022 runsc is too old and slow). */
export const DEFAULT_RUNSC_BINARY = '/var/lib/den/tools/runsc/usr/bin/runsc';

/** The runsc binary: env DEN_RUNSC, else den's installed copy. */
export function runscBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.DEN_RUNSC || DEFAULT_RUNSC_BINARY;
}

/**
 * gVisor. Each flag below was checked against runsc 0.0~20240729.0 on the den hosts:
 * - `--platform=systrap`: ~25x faster syscalls than ptrace, no /dev/kvm needed.
 * - `--network=none`: loopback only inside the sentry (networking comes with den's network manager).
 * - `--overlay2=none`: without it runsc puts a sandbox-internal overlay over the root (`root:self`), and writes land
 *   in a filestore instead of the host overlay's upper dir on the sandbox disk, so they would not persist across
 *   stop/start and the disk limit would not apply. Verified: a file written in the guest appears in upper/.
 * - `--host-uds=create`: lets the guest create a Unix socket backed by a host file in a bind mount (the agent's
 *   /run/den/agent.sock); the daemon then connects to it from the host. `open` (guest connects to host sockets) is
 *   not needed, so `all` is not used.
 * - `--cpu-num-from-quota`: the guest's CPU count follows the cgroup quota (at least 2) instead of the host's.
 * The same flags go on every subcommand: runsc does not remember global flags after `create`.
 */
export class RunscRuntime extends OciRuntime {
  readonly name: RuntimeName = 'runsc';

  constructor(options: Partial<OciRuntimeOptions> & { root: string }) {
    super({ binary: options.binary || runscBinary(), root: options.root });
  }

  protected globalArgs(): string[] {
    return [
      '--root',
      this.root,
      '--platform=systrap',
      '--network=none',
      '--overlay2=none',
      '--host-uds=create',
      '--cpu-num-from-quota',
    ];
  }

  /**
   * `runsc delete` SIGKILLs the sandbox and then waits until the killed process is reaped by the host's init, which
   * on these VMs reaps orphans only every 1-2 s (measured: a killed orphan stays a zombie ~1.3 s), so every delete
   * took ~1.9 s. Every host process of a sandbox (sentry, gofer, systrap stubs) lives in the container's cgroup;
   * killing them all there and removing the state files is all `runsc delete` does for the sandbox, without the wait.
   * When the cgroup is already empty (a container that never started), runsc's own delete runs.
   */
  override async delete(id: string): Promise<void> {
    if ((await cgroupProcs(cgroupPath(id))).length === 0) return super.delete(id);
    await destroyCgroup(cgroupPath(id));
    await this.removeStateFiles(id);
  }

  protected override async prepareRootfs(config: ContainerConfig): Promise<void> {
    await super.prepareRootfs(config);
    // /tmp is bind-mounted onto itself (oci-spec.ts), so it must exist in the root filesystem.
    await ensureDir(join(config.rootfsDir, 'tmp'), 0o1777);
  }
}
