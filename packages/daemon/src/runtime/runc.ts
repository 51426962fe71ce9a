import type { ContainerConfig, RuntimeName } from '../services/ports.js';
import { OciRuntime, type OciRuntimeOptions } from './oci-runtime.js';
import { runBinary } from './run-binary.js';

export const DEFAULT_RUNC_BINARY = '/usr/sbin/runc';

/** The runc binary: env DEN_RUNC, else Debian's /usr/sbin/runc. */
export function runcBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.DEN_RUNC || DEFAULT_RUNC_BINARY;
}

/** runc: the host kernel with namespaces, dropped capabilities, no-new-privileges and a seccomp deny-list. */
export class RuncRuntime extends OciRuntime {
  readonly name: RuntimeName = 'runc';

  constructor(options: Partial<OciRuntimeOptions> & { root: string }) {
    super({ binary: options.binary || runcBinary(), root: options.root });
  }

  protected globalArgs(): string[] {
    return ['--root', this.root];
  }

  /** Only a container without den's network namespace needs `lo` brought up between create and start. */
  protected override runsInOneStep(config: ContainerConfig): boolean {
    return Boolean(config.netnsPath);
  }

  /**
   * A new network namespace starts with `lo` down, and runc does not bring it up (runsc's netstack does). Without it
   * nothing in the sandbox can use 127.0.0.1. The container's init is stopped in `create` until `start`, so this is
   * done before any sandbox code runs.
   */
  protected override async afterCreate(config: ContainerConfig, pid: number): Promise<void> {
    // A namespace from den's network manager already has lo up.
    if (config.netnsPath) return;
    await runBinary('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', 'link', 'set', 'lo', 'up'], {
      runtime: this.name,
      timeoutMs: 10_000,
    });
  }
}
