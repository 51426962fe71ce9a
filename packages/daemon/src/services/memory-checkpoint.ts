import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DenError } from '@den/shared';
import type { DenPaths } from '../paths.js';
import type { AgentConnection, Runtime, SandboxRecord } from './ports.js';

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
   * undefined. Measured with runsc 2024: a process the agent started with its output still attached (a background
   * command, a running exec) makes the checkpoint fail (gVisor cannot save the agent's end of its stdio sockets), and
   * so does a TCP endpoint that is connected or in TIME_WAIT (waited for up to CONNECTIONS_CLOSE_MS).
   */
  async blocker(rec: SandboxRecord): Promise<string | undefined> {
    const attached = (await this.agent(rec.id).listProcesses()).filter((p) => !p.exit && !p.pty);
    if (attached.length) {
      const list = attached
        .slice(0, 3)
        .map((p) => `pid ${p.pid} ${p.cmd.join(' ').slice(0, 60)}`)
        .join(', ');
      return `processes started through den still have their output attached (${list}); start long-running servers detached (nohup ... &) to keep memory on pause`;
    }
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
    while (
      await stat(socket).then(
        () => true,
        () => false,
      )
    ) {
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

  /**
   * The agent closed its listener for the checkpoint; SIGUSR2 (forwarded by tini) makes it listen again. A signal
   * sent while the restored sandbox is still loading can be lost (measured: the first one right after `runsc restore`
   * returned sometimes never arrived), so it is repeated until the agent answers; the agent ignores extra ones.
   */
  async wakeRestoredAgent(rt: Runtime, id: string): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    for (;;) {
      await rt.kill(id, 'SIGUSR2');
      try {
        await this.agent(id).waitReady(150);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
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

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
