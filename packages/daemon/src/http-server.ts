import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { EnvdHandler } from './e2b/envd/index.js';
import type { PreviewProxy } from './proxy/preview-proxy.js';

/**
 * The daemon's one HTTP server: preview requests (host form `<port>-<sandbox>.<domain>` or path `/proxy/...`) go to
 * the preview proxy straight from node:http, without Fastify's routing, hooks and logging on the hot path; everything
 * else goes to the API. Used as Fastify's `serverFactory`.
 *
 * Upgrades: @fastify/websocket listens to the server's 'upgrade' event for the API's WebSocket routes, and listeners
 * cannot stop each other, so preview upgrades are taken out at `emit` before any listener sees them.
 */
export function daemonServer(proxy: PreviewProxy, envd?: EnvdHandler) {
  return (apiHandler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
      // E2B in-sandbox calls (E2b-Sandbox-Id under /e2b, or host 49983-<id>.<domain>) go before the preview proxy,
      // whose host form would otherwise take 49983-<id> for an app port.
      if (envd?.matches(req)) {
        envd.handle(req, res);
        return;
      }
      const route = proxy.route(req);
      if (route) void proxy.handleRequest(req, res, route);
      else apiHandler(req, res);
    });
    const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
    server.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (event === 'upgrade') {
        const [req, socket, head] = args as [IncomingMessage, Duplex, Buffer];
        const route = proxy.route(req);
        if (route) {
          void proxy.handleUpgrade(req, socket, head, route);
          return true;
        }
      }
      return emit(event, ...args);
    }) as Server['emit'];
    return server;
  };
}
