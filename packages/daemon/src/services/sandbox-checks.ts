import { availableParallelism, totalmem } from 'node:os';
import { DenError, isSandboxId, isSandboxName, SANDBOX_NAME_HINT } from '@den/shared';

/** A sandbox name must be a DNS label and must not look like an id (ids and names share one namespace of refs). */
export function checkSandboxName(name: string): void {
  if (!isSandboxName(name)) throw new DenError('INVALID_ARGUMENT', `name "${name}" is not valid: ${SANDBOX_NAME_HINT}`);
  if (isSandboxId(name)) {
    throw new DenError('INVALID_ARGUMENT', `name "${name}" looks like a sandbox id: add a hyphen or change its length`);
  }
}

/** Limits beyond what this machine has are refused up front instead of failing inside the runtime. */
export function checkHostCapacity(cpus: number, memoryMB: number): void {
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
