import { chmodSync, rmSync } from 'node:fs';
import {
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { DenError } from './contract.js';
import * as fileRoutes from './file-routes.js';
import { FileService } from './files.js';
import { parseRequest, readJsonBody, sendError, sendJson } from './http.js';
import { listeningSockets, openConnections } from './ports.js';
import { ProcessRegistry } from './process-registry.js';
import * as processRoutes from './process-routes.js';
import type { AgentHealth } from './protocol.js';
import type { Spawner } from './spawner.js';
import { UserDirectory } from './users.js';
import { warmUp } from './warm-up.js';
import { watchRoute } from './watch.js';

export interface AgentOptions {
  version: string;
  /**
   * Called once the answer to `POST /checkpoint/prepare` is sent: the agent must give up its listening socket (gVisor
   * cannot checkpoint a socket bound to a host file) until the daemon signals it after the restore.
   */
  onPrepareCheckpoint?: () => void;
  defaultUser: string;
  sandboxEnv: Record<string, string>;
  /** starts pipe processes without forking the agent (spawner.ts); without one the agent forks itself */
  spawner?: Spawner;
  /** where /etc/passwd and /etc/group are read; the sandbox's own by default */
  userFiles?: { passwd: string; group: string };
}

export interface Agent {
  readonly server: Http2Server;
  readonly registry: ProcessRegistry;
  listen(socketPath: string): Promise<void>;
  /** Terminates every process (SIGTERM, then SIGKILL after `graceMs`), then closes all sessions and the server. */
  shutdown(graceMs: number): Promise<void>;
  /** Stops listening and drops every session; processes keep running. `listen` again to serve. */
  unlisten(): Promise<void>;
  /** Runs one throw-away `true` through the launch path (warm-up.ts). */
  warmUp(): Promise<void>;
}

/**
 * HTTP/2 flow-control windows. The daemon keeps one session per sandbox, multiplexing every operation, so the
 * connection window must not let one large transfer starve the rest; 1 MiB per stream and 16 MiB per session let
 * a file stream at local-socket speed while bounding what a peer can make the agent buffer.
 */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 16 * 1024 * 1024;

/** Builds the agent's server without listening, so tests and main.ts wire it the same way. */
export function createAgent(options: AgentOptions): Agent {
  const users = new UserDirectory(options.defaultUser, options.userFiles);
  const registry = new ProcessRegistry();
  const processDeps: processRoutes.ProcessRouteDeps = {
    users,
    sandboxEnv: options.sandboxEnv,
    registry,
    spawner: options.spawner,
  };
  const fileDeps: fileRoutes.FileRouteDeps = { users, files: new FileService(users) };
  const sessions = new Set<Http2Session>();
  /** the connections under the sessions: `unlisten` waits until each one's descriptor is closed */
  const sockets = new Set<Socket>();

  // maxSessionMemory is a credit limit (queued output, header tables), not an allocation: a few connects that each
  // replay a 1 MiB buffer must not make the session refuse new streams.
  const server = createServer({ settings: { initialWindowSize: STREAM_WINDOW_BYTES }, maxSessionMemory: 64 });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => {
      // The daemon went away; its streams are closed with the session.
    });
    session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {
      // A reset by the client; the 'close' handlers clean up.
    });
    route(stream, headers).catch((err) => sendError(stream, err));
  });

  async function route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const { method, path, query } = parseRequest(headers);
    const proc = /^\/processes\/(\d+)\/([a-z-]+)$/.exec(path);
    if (proc) {
      const pid = Number(proc[1]);
      const action = proc[2];
      if (method !== 'POST') throw unknownEndpoint(method, path);
      switch (action) {
        case 'connect':
          return processRoutes.connectProcess(stream, pid, processDeps, replayFrom(query));
        case 'signal':
          return processRoutes.signalProcess(stream, pid, processDeps);
        case 'stdin':
          return processRoutes.writeStdin(stream, pid, processDeps);
        case 'stdin-eof':
          return processRoutes.closeStdin(stream, pid, processDeps);
        case 'resize':
          return processRoutes.resizeProcess(stream, pid, processDeps);
      }
      throw unknownEndpoint(method, path);
    }
    switch (`${method} ${path}`) {
      case 'POST /process':
        return processRoutes.openProcess(stream, processDeps);
      case 'GET /health':
        return sendJson(stream, 200, health());
      case 'GET /processes':
        return processRoutes.listProcesses(stream, processDeps);
      case 'POST /checkpoint/prepare':
        stream.once('close', () => options.onPrepareCheckpoint?.());
        return sendJson(stream, 200, { ok: true });
      case 'PUT /env': {
        // A sandbox taken from den's warm pool gets its environment after it booted: it applies to every process
        // started from now on (nothing else runs in a pooled sandbox yet).
        const body = await readJsonBody(stream);
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries(body)) {
          if (typeof v !== 'string') throw new DenError('INVALID_ARGUMENT', `env ${k} must be a string`);
          env[k] = v;
        }
        for (const k of Object.keys(processDeps.sandboxEnv)) delete processDeps.sandboxEnv[k];
        Object.assign(processDeps.sandboxEnv, env);
        return sendJson(stream, 200, { ok: true });
      }
      case 'GET /connections':
        return sendJson(stream, 200, await openConnections());
      case 'GET /ports':
        return sendJson(stream, 200, await listeningSockets());
      case 'GET /files/content':
        return fileRoutes.readContent(stream, query, fileDeps);
      case 'PUT /files/content':
        return fileRoutes.writeContent(stream, query, fileDeps);
      case 'GET /files/list':
        return fileRoutes.listFiles(stream, query, fileDeps);
      case 'GET /files/stat':
        return fileRoutes.statFile(stream, query, fileDeps);
      case 'POST /files/mkdir':
        return fileRoutes.makeDir(stream, fileDeps);
      case 'POST /files/move':
        return fileRoutes.moveFile(stream, fileDeps);
      case 'DELETE /files':
        return fileRoutes.removeFile(stream, query, fileDeps);
      case 'GET /files/watch':
        return watchRoute(stream, query);
    }
    throw unknownEndpoint(method, path);
  }

  function health(): AgentHealth {
    return {
      version: options.version,
      pid: process.pid,
      uptimeMs: Math.round(process.uptime() * 1000),
      processes: registry.runningCount(),
    };
  }

  return {
    server,
    registry,
    listen(socketPath) {
      // A socket file left by a previous agent (the sandbox restarted) would make listen fail with EADDRINUSE.
      rmSync(socketPath, { force: true });
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => {
          server.off('error', reject);
          // Only root may connect: the agent runs anything as any user, so it must not be a way up for the sandbox
          // user. The daemon connects from the host as root.
          try {
            chmodSync(socketPath, 0o600);
          } catch (err) {
            console.error(`den-agent: could not restrict ${socketPath} to root: ${(err as Error).message}`);
          }
          resolve();
        });
      });
    },
    warmUp: () => warmUp(processDeps),
    async unlisten() {
      const closed = new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
      // Graceful first, so the answer to the prepare request reaches the daemon (which then closes its side); after
      // 200 ms at most, nothing may stay connected.
      for (const session of sessions) session.close();
      const deadline = Date.now() + 200;
      while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      for (const session of sessions) session.destroy();
      // A destroyed HTTP/2 session still ends its socket gracefully, which waits for unsent data to be written (a
      // process stream's output the daemon no longer reads): its descriptor, a host connection gVisor cannot save,
      // stayed open into the checkpoint. Measured: every pause with a process whose output is attached failed so.
      // The sockets are destroyed here, and 'close' fires once libuv has closed the descriptor.
      await Promise.all(
        [...sockets].map(
          (socket) =>
            new Promise<void>((resolve) => {
              socket.once('close', () => resolve());
              socket.destroy();
            }),
        ),
      );
      await closed;
    },
    async shutdown(graceMs) {
      await registry.terminateAll(graceMs);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      // Sessions with streams still open (a client that never ends its side) do not hold up the exit.
      const timer = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, 500);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** Where a connect's replay starts: `?replay=false` none, `?from=N` at output frame N, else all that is buffered. */
function replayFrom(query: URLSearchParams): number | undefined {
  if (query.get('replay') === 'false') return undefined;
  const from = query.get('from');
  if (from === null) return 0;
  const n = Number(from);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new DenError('INVALID_ARGUMENT', `from must be a whole number of output frames >= 0, not "${from}"`);
  }
  return n;
}

function unknownEndpoint(method: string, path: string): DenError {
  return new DenError('INVALID_ARGUMENT', `the agent has no endpoint ${method} ${path}`);
}
