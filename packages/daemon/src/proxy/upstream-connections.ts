import { Agent } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The proxy's connections into sandboxes, grouped by sandbox so they can all be cut at once: a sandbox about to be
 * checkpointed or stopped must have no TCP connection in flight (a checkpoint with open connections fails or
 * restores sockets whose peer is gone).
 *
 * HTTP requests go through one keep-alive `Agent` per sandbox; an Agent pools sockets per `address:port`, so every
 * target port of the sandbox gets its own pool. `agent.destroy()` ends both the idle and the in-use sockets, which
 * also cuts streaming responses. Upgraded connections (WebSocket) leave the agent, so they are tracked here.
 */
export class UpstreamConnections {
  private readonly agents = new Map<string, Agent>();
  private readonly tunnels = new Map<string, Set<Socket>>();

  constructor(private readonly maxIdleSocketsPerPort = 32) {}

  agentFor(sandboxId: string): Agent {
    let agent = this.agents.get(sandboxId);
    if (!agent) {
      // lifo reuses the most recently used socket, the one least likely to have hit the server's idle timeout;
      // Node also honours the server's `Keep-Alive: timeout=N` hint and retires sockets before that.
      agent = new Agent({ keepAlive: true, maxFreeSockets: this.maxIdleSocketsPerPort, scheduling: 'lifo' });
      this.agents.set(sandboxId, agent);
    }
    return agent;
  }

  /** Tracks an upgraded connection to a sandbox until it closes; `drop` destroys it. */
  trackTunnel(sandboxId: string, socket: Socket): void {
    let set = this.tunnels.get(sandboxId);
    if (!set) {
      set = new Set();
      this.tunnels.set(sandboxId, set);
    }
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (set.size === 0 && this.tunnels.get(sandboxId) === set) this.tunnels.delete(sandboxId);
    });
  }

  /** Destroys every pooled, in-flight and upgraded connection to the sandbox; later requests open new ones. */
  drop(sandboxId: string): void {
    const agent = this.agents.get(sandboxId);
    if (agent) {
      this.agents.delete(sandboxId);
      agent.destroy();
    }
    const set = this.tunnels.get(sandboxId);
    if (set) {
      this.tunnels.delete(sandboxId);
      for (const socket of set) socket.destroy();
    }
  }

  /** Counts for tests and status: idle pooled sockets, sockets serving a request, upgraded connections. */
  count(sandboxId: string): { idle: number; active: number; tunnels: number } {
    const agent = this.agents.get(sandboxId);
    const total = (pools: NodeJS.ReadOnlyDict<Socket[]> | undefined) =>
      Object.values(pools ?? {}).reduce((n, list) => n + (list?.length ?? 0), 0);
    return {
      idle: total(agent?.freeSockets),
      active: total(agent?.sockets),
      tunnels: this.tunnels.get(sandboxId)?.size ?? 0,
    };
  }

  close(): void {
    for (const id of [...new Set([...this.agents.keys(), ...this.tunnels.keys()])]) this.drop(id);
  }
}
