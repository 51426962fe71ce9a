import type { ListeningPort } from '@den/shared';
import type { DenClient } from './client.js';
import type { RequestOptions } from './config.js';

/** Options of `ports.waitFor`. */
export interface WaitForPortOptions extends RequestOptions {
  /** give up after this long; default 60 000 */
  timeoutMs?: number;
  /** how often to look; default 200 */
  intervalMs?: number;
}

/**
 * The TCP ports servers listen on inside a sandbox, and their preview URLs.
 *
 * @example
 * ```ts
 * await sbx.commands.run('python3 -m http.server 8000', { background: true });
 * const port = await sbx.ports.waitFor(8000);
 * console.log(port.urls.host); // http://8000-<id>.localhost:7070/
 * ```
 */
export class Ports {
  /** @internal */
  constructor(
    private readonly client: DenClient,
    private readonly sandboxId: string,
  ) {}

  /**
   * Every listening TCP socket (port, bound address, whether previews can reach it, URLs).
   *
   * @example
   * ```ts
   * for (const p of await sbx.ports.list()) console.log(p.port, p.urls.path);
   * ```
   */
  list(opts?: RequestOptions): Promise<ListeningPort[]> {
    return this.client.listPorts(this.sandboxId, opts);
  }

  /**
   * Resolves once something listens on `port` on an address previews reach (0.0.0.0 or the sandbox's own); a server
   * bound to 127.0.0.1 only is reported in the error, since previews cannot reach it.
   *
   * @example
   * ```ts
   * const { urls } = await sbx.ports.waitFor(3000, { timeoutMs: 30_000 });
   * ```
   */
  async waitFor(port: number, opts: WaitForPortOptions = {}): Promise<ListeningPort> {
    const { timeoutMs = 60_000, intervalMs = 200, ...request } = opts;
    const deadline = Date.now() + timeoutMs;
    let loopbackOnly = false;
    for (;;) {
      const ports = (await this.list(request)).filter((p) => p.port === port);
      const reachable = ports.find((p) => p.reachable);
      if (reachable) return reachable;
      loopbackOnly = ports.length > 0;
      if (Date.now() + intervalMs > deadline) break;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
    const hint = loopbackOnly
      ? `it listens on loopback only: bind the server to 0.0.0.0`
      : 'start the server (bound to 0.0.0.0) or check its logs';
    throw new PortWaitTimeoutError(`nothing reachable listens on port ${port} after ${timeoutMs} ms: ${hint}`, port);
  }
}

/** `ports.waitFor` gave up. */
export class PortWaitTimeoutError extends Error {
  constructor(
    message: string,
    readonly port: number,
  ) {
    super(message);
    this.name = 'PortWaitTimeoutError';
  }
}
