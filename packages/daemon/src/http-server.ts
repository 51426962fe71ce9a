import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
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
    takeConnectionsFirst(server, (socket, handOver) => proxy.acceptConnection(socket, handOver));
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

/**
 * Puts `first` in front of Node's own handling of new connections: it reads what it needs and either keeps the
 * connection or passes it on with the bytes it read, which Node's HTTP parser then receives as the socket's first
 * data. (Node's parser reads the socket directly once it has it, so bytes already read cannot be pushed back with
 * `unshift`; emitting them as 'data' after the parser is attached is what reaches it.)
 */
function takeConnectionsFirst(
  server: Server,
  first: (socket: Socket, handOver: (socket: Socket, unread: Buffer) => void) => void,
): void {
  const nodeHandlers = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const handOver = (socket: Socket, unread: Buffer) => {
    for (const handler of nodeHandlers) handler.call(server, socket);
    if (unread.length > 0) socket.emit('data', unread);
  };
  server.on('connection', (socket: Socket) => first(socket, handOver));
}
