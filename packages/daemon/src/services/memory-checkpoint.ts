import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ListeningSocket, TcpConnection } from '@den/agent';
import { DenError } from '@den/shared';
import { pathExists } from '../fs-util.js';
import type { DenPaths } from '../paths.js';
import type { AgentConnection, Runtime } from './ports.js';
import { wakeRestoredAgent } from './restore-wake.js';

/**
 * The parts of a pause with memory (runsc checkpoint/restore) that talk to the sandbox's agent: the connections a
 * checkpoint resets, waiting for the agent to let go of its host socket, finding a memory image, and
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
   * Why a snapshot of the running sandbox should not checkpoint it, or undefined: the checkpoint would reset the
   * connections it holds to the outside, and a snapshot must not disturb a sandbox that goes on running. Such a
   * sandbox is frozen for its snapshot instead, and the snapshot has no memory.
   */
  async snapshotBlocker(id: string): Promise<string | undefined> {
    const open = await this.outsideConnections(id);
    if (open.length === 0) return undefined;
    return `the sandbox holds open TCP connections that saving its memory would reset (${listed(open)})`;
  }

  /**
   * The TCP connections the sandbox's own processes hold to the outside, which a checkpoint resets (runsc runs with
   * `--net-disconnect-ok`): not those into a port the sandbox serves (den's preview proxy, closed before a pause
   * anyway) nor loopback ones inside the sandbox, which gVisor saves with the rest of its memory.
   */
  async outsideConnections(id: string): Promise<TcpConnection[]> {
    const agent = this.agent(id);
    const [open, listening] = await Promise.all([agent.listConnections(), agent.listPorts()]);
    return toTheOutside(open, listening);
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
}

/** The connections that are not into a port the sandbox serves and not over its loopback. */
export function toTheOutside(open: TcpConnection[], listening: ListeningSocket[]): TcpConnection[] {
  const served = new Set(listening.map((l) => l.port));
  return open.filter((c) => !served.has(portOf(c.local)) && !isLoopback(c.remote));
}

function portOf(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
}

function isLoopback(endpoint: string): boolean {
  return endpoint.startsWith('127.') || endpoint.startsWith('::1:') || endpoint.startsWith('::ffff:127.');
}

/** What a pause with memory reports about the connections it reset (their processes see ECONNRESET on resume). */
export function connectionsClosedNote(closed: TcpConnection[]): string | null {
  if (closed.length === 0) return null;
  const [n, who] =
    closed.length === 1
      ? ['1 open TCP connection was', 'its process sees']
      : [`${closed.length} open TCP connections were`, 'their processes see'];
  return `memory saved; ${n} closed (${listed(closed)}): ${who} a reset on resume`;
}

/** The first three connections, "local -> remote", and "..." for more. */
function listed(connections: TcpConnection[]): string {
  const first = connections.slice(0, 3).map((c) => `${c.local} -> ${c.remote}`);
  return [...first, ...(connections.length > 3 ? ['...'] : [])].join(', ');
}

/**
 * What gVisor could not save, from a checkpoint failure (after "encoding error:", or "... cannot be saved ..."), else
 * the start of its first line: runsc's message goes on with a goroutine dump or whole structures.
 */
export function checkpointFailure(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const m =
    /encoding error: ([^\n{]{1,160})/.exec(text) ??
    /([Cc]annot (?:save|be saved)[^\n{]{0,120})/.exec(text) ??
    /([^\n{]{0,200})/.exec(text);
  return (m?.[1] ?? text).replace(/[\s:]+$/, '');
}
