import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { PreviewProxy } from './proxy/preview-proxy.js';

/**
 * The daemon's one HTTP server: preview requests (host form `<port>-<sandbox>.<domain>` or path `/proxy/...`) go to
 * the preview proxy straight from node:http, without Fastify's routing, hooks and logging on the hot path; everything
 * else goes to the API. Used as Fastify's `serverFactory`.
 *
 * Upgrades: @fastify/websocket listens to the server's 'upgrade' event for the API's WebSocket routes, and listeners
 * cannot stop each other, so preview upgrades are taken out at `emit` before any listener sees them.
 */
export function daemonServer(proxy: PreviewProxy) {
  return (apiHandler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
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
