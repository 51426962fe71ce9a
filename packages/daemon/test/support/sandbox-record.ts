import { newSandboxId } from '@den/shared';
import type { SandboxRecord } from '../../src/services/ports.js';

/** A complete sandbox record with a fresh id, for store-level tests; `over` sets the fields a test is about. */
export function sandboxRecord(over: Partial<SandboxRecord> = {}): SandboxRecord {
  return {
    id: newSandboxId(),
    name: null,
    image: 'base',
    runtime: 'runsc',
    state: 'creating',
    desiredState: 'running',
    cpus: 1.5,
    memoryMB: 512,
    diskMB: 1024,
    pids: 100,
    env: { A: '1', B_2: 'x y' },
    metadata: { team: 'x' },
    createdAt: new Date().toISOString(),
    startedAt: null,
    address: null,
    network: { policy: 'allowlist', allow: ['10.0.0.0/8', 'example.com'] },
    previewPublic: false,
    previewToken: 'secret',
    pause: null,
    pooled: false,
    lastError: null,
    timeoutAt: null,
    onTimeout: 'delete',
    envdAccessToken: null,
    idleTimeoutMs: null,
    lastActivityAt: null,
    ...over,
  };
}
