import { planLaunch } from './launch.js';
import { ManagedProcess } from './managed-process.js';
import type { ProcessRouteDeps } from './process-routes.js';

/**
 * Runs `true` once through the whole launch path (user lookup, environment, den-spawn, the process itself) without
 * registering or reporting it. Started right after the agent listens, it overlaps with the daemon's readiness check
 * and create response, so the first command a user sends finds the agent's code compiled and the sandbox's file
 * caches (the dynamic loader, libc) warm. Resolves when `true` has ended or could not start (an image without it).
 */
export async function warmUp(deps: ProcessRouteDeps): Promise<void> {
  try {
    const plan = planLaunch({ cmd: ['true'] }, deps);
    await new Promise<void>((resolve, reject) => {
      const p = new ManagedProcess(plan, () => resolve(), deps.spawner);
      p.start().then(() => p.endStdin(), reject);
    });
  } catch {
    // nothing to warm: the first real command pays the cost
  }
}
