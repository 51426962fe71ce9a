import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { command, commandSteps } from '../command.js';
import type { ContainerConfig, RuntimeName } from '../services/ports.js';
import { destroyCgroup } from './cgroups.js';
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
 * - `--network=sandbox --gso=false`: gVisor's own network stack on the namespace den's network manager prepared
 *   (eth0 with the sandbox's address and a default route); without GSO, measured 7 -> 99 MiB/s (RUNTIME-NOTES).
 * - `--overlay2=none`: without it runsc puts a sandbox-internal overlay over the root (`root:self`), and writes land
 *   in a filestore instead of the host overlay's upper dir on the sandbox disk, so they would not persist across
 *   stop/start and the disk limit would not apply. Verified: a file written in the guest appears in upper/.
 * - `--host-uds=create`: lets the guest create a Unix socket backed by a host file in a bind mount (the agent's
 *   /run/den/agent.sock); the daemon then connects to it from the host. `open` (guest connects to host sockets) is
 *   not needed, so `all` is not used.
 * - `--cpu-num-from-quota`: the guest's CPU count follows the cgroup quota (at least 2) instead of the host's.
 * - `--file-access-mounts=exclusive`: bind mounts (the read-only, content-addressed /.den and the agent socket dir)
 *   are not changed behind the sandbox's back, so gVisor may cache them; measured: agent ready ~60 ms sooner.
 * - `--net-disconnect-ok`: a checkpoint resets the TCP connections the sandbox holds (its processes see ECONNRESET /
 *   ECONNABORTED after the resume, as after a laptop's sleep) instead of refusing to save them. Without it any
 *   connected or TIME_WAIT endpoint made the checkpoint fail, and one can be invisible in /proc/net/tcp: measured,
 *   a pause right after a preview request failed 1 time in ~10 on an orphaned endpoint of the closed proxy connection.
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
      '--network=sandbox',
      '--gso=false',
      '--overlay2=none',
      '--host-uds=create',
      '--cpu-num-from-quota',
      '--file-access-mounts=exclusive',
      '--net-disconnect-ok',
    ];
  }

  /**
   * `runsc delete` SIGKILLs the sandbox and then waits until the killed process is reaped by the host's init, which
   * on these VMs reaps orphans only every 1-2 s (measured: a killed orphan stays a zombie ~1.3 s), so every delete
   * took ~1.5-1.9 s, even of a sandbox that had already exited. Every host process of a sandbox (sentry, gofer,
   * systrap stubs) lives in the container's cgroup, and the sandbox pid is in runsc's state: killing them and
   * removing the cgroup and the state files is what `runsc delete` does, without the wait.
   */
  override async delete(id: string): Promise<void> {
    await this.deleteContainer(id);
    if (existsSync(`/run/netns/${loopbackNamespace(id)}`)) {
      await command('ip', ['netns', 'del', loopbackNamespace(id)]).catch(() => undefined);
    }
  }

  private async deleteContainer(id: string): Promise<void> {
    const st = await this.state(id).catch(() => undefined);
    if (st?.pid) {
      try {
        process.kill(st.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await destroyCgroup(cgroupPath(id));
    await this.removeStateFiles(id);
  }

  /**
   * gVisor issue 10704: on this kernel `runsc start` (which sets up the sandbox's network) refuses a container network namespace ("cannot run with network
   * enabled in root network namespace"), because it decides from /proc/sys/net whether it runs in the root one.
   * Measured fix (RUNTIME-NOTES): run `create` and `start` in a private mount namespace with an empty tmpfs over /proc/sys/net. Only
   * the runsc process and its children see that mount; the sandbox has its own mount namespace anyway.
   */
  protected override createCommand(args: string[]): { binary: string; args: string[] } {
    return {
      binary: 'unshare',
      args: [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t tmpfs -o size=4k,mode=555 den-no-sysnet /proc/sys/net && exec "$0" "$@"',
        this.binary,
        ...args,
      ],
    };
  }

  /** runsc needs nothing between create and start. */
  protected override runsInOneStep(): boolean {
    return true;
  }

  override readonly canCheckpoint = true;

  /**
   * gVisor's netstack takes its interfaces from the container's network namespace when it boots, and a brand-new
   * namespace has `lo` down: a container without den's network (netnsPath) would have no loopback at all. Such a
   * container gets a namespace of its own with only `lo` up, removed with the container.
   */
  override async run(config: ContainerConfig, opts: { restoreFrom?: string; removed?: boolean } = {}): Promise<void> {
    if (config.netnsPath) return super.run(config, opts);
    const ns = loopbackNamespace(config.id);
    await commandSteps([
      ...(existsSync(`/run/netns/${ns}`) ? [{ argv: ['ip', 'netns', 'del', ns] }] : []),
      { argv: ['ip', 'netns', 'add', ns] },
      { argv: ['ip', '-n', ns, 'link', 'set', 'lo', 'up'] },
    ]);
    await super.run({ ...config, netnsPath: `/run/netns/${ns}` }, opts);
  }

  /**
   * `runsc checkpoint` saves the sandbox's memory and kernel state and then stops it. It resets TCP connections
   * (`--net-disconnect-ok`) but fails while a socket is bound to a host file (the agent closes its listener first:
   * AgentClient.prepareCheckpoint) or a process keeps a deleted file open; the caller then falls back to a
   * filesystem-only stop.
   * `--compression=none`: the default flate compression is most of the time of both checkpoint and restore. Measured
   * on a 2-core host, a sandbox with the agent and a small Node server: checkpoint 600 -> 190 ms, restore 750 -> 330 ms,
   * for an image of 28 MB instead of 6 MB (pages.img holds the guest's used memory as it is).
   */
  override async checkpoint(id: string, imageDir: string): Promise<void> {
    await mkdir(imageDir, { recursive: true });
    // Uncompressed: measured here, flate made the checkpoint ~300 ms slower and the restore ~350 ms slower for a
    // small Node server (a 28 MB image); disk is cheaper than the wait.
    await this.invoke(['checkpoint', '--compression', 'none', '--image-path', imageDir, id], 120_000);
  }

  protected override async prepareRootfs(config: ContainerConfig): Promise<void> {
    await super.prepareRootfs(config);
    // /tmp is bind-mounted onto itself (oci-spec.ts), so it must exist in the root filesystem.
    await ensureDir(join(config.rootfsDir, 'tmp'), 0o1777);
  }
}

/** The namespace of a runsc container that has none from den's network manager. */
function loopbackNamespace(id: string): string {
  return `denlo-${id}`;
}
