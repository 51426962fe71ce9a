import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DenError } from '@den/shared';
import { pathExists } from '../fs-util.js';
import type { DenPaths } from '../paths.js';
import type { AgentConnection, Runtime, SandboxRecord } from './ports.js';
import { wakeRestoredAgent } from './restore-wake.js';

/** How long a pause waits for TCP connections in the sandbox to close before it gives up on saving memory. */
const CONNECTIONS_CLOSE_MS = 1_500;

/** What gVisor would refuse to checkpoint, found before trying (a failed checkpoint kills the sandbox). */
export class NotCheckpointable extends Error {}

/**
 * The parts of a pause with memory (runsc checkpoint/restore) that talk to the sandbox's agent: what would make
 * gVisor refuse the checkpoint, waiting for the agent to let go of its host socket, finding a memory image, and
 * waking the agent after a restore.
 */
export class MemoryCheckpoint {
  constructor(
    private readonly paths: DenPaths,
    private readonly agent: (sandboxId: string) => AgentConnection,
    /** how long a restored agent may take to answer */
    private readonly readyTimeoutMs: number,
  ) {}

  /**
   * Why gVisor would refuse to checkpoint the sandbox now (a failed checkpoint kills it, so this is asked first), or
   * undefined. Measured with runsc 2024: a TCP endpoint that is connected or in TIME_WAIT cannot be saved (waited for
   * up to CONNECTIONS_CLOSE_MS). Processes started through den with their output attached can: den destroys its
   * session with the agent before the checkpoint, and their output is replayed to a reconnecting client.
   */
  async blocker(rec: SandboxRecord): Promise<string | undefined> {
    const open = await this.openConnections(rec.id);
    if (open.length) {
      const list = open
        .slice(0, 3)
        .map((c) => `${c.local} <-> ${c.remote} ${c.state}`)
        .join(', ');
      return `the sandbox has open TCP connections gVisor cannot save (${list}${open.length > 3 ? ', ...' : ''})`;
    }
    return undefined;
  }

  /**
   * The agent removes its socket file once its listener and every session are closed: only then may the checkpoint
   * start (gVisor cannot save a socket still bound or connected to a host file).
   */
  async socketGone(id: string): Promise<void> {
    const socket = this.paths.sandbox(id).agentSocket;
    const deadline = Date.now() + 2_000;
    while (await pathExists(socket)) {
      if (Date.now() > deadline)
        throw new DenError('AGENT_UNAVAILABLE', 'the agent did not close its socket for the checkpoint');
      await sleep(3);
    }
  }

  /** Whether the sandbox's directory holds a complete memory image (a checkpoint that finished). */
  async hasImage(id: string): Promise<boolean> {
    try {
      return (await stat(join(this.paths.sandbox(id).checkpointDir, 'checkpoint.img'))).size > 0;
    } catch {
      return false;
    }
  }

  /** The restored agent listens again on SIGUSR2 (restore-wake.ts). */
  async wakeRestoredAgent(rt: Runtime, id: string): Promise<void> {
    await wakeRestoredAgent({
      signal: () => rt.kill(id, 'SIGUSR2'),
      socketPath: this.paths.sandbox(id).agentSocket,
      ready: (ms) => this.agent(id).waitReady(ms),
      timeoutMs: this.readyTimeoutMs,
    });
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
}

/** The line of a checkpoint failure that says what gVisor could not save. */
export function checkpointFailure(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const m = /(Cannot save[^\n:]*|cannot be saved[^\n]*|[^\n]{0,200})/.exec(text);
  return (m?.[1] ?? text).trim();
}
