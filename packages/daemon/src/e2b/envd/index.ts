import type { IncomingMessage, ServerResponse } from 'node:http';
import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { DenError } from '@den/shared';
import { handlePlainHttp } from './files-http.js';
import { filesystemService } from './filesystem-service.js';
import { Filesystem } from './gen/filesystem/filesystem_pb.js';
import { Process } from './gen/process/process_pb.js';
import { PathResolver } from './paths.js';
import { processService } from './process-service.js';
import { type EnvdSandboxes, type EnvdTarget, headerValue, resolveTarget, targetKey } from './sandbox-context.js';

/** The port the e2b SDK addresses envd on; the host form `49983-<id>.<domain>` selects this API. */
export const ENVD_PORT = 49983;
/** Path prefix of den's E2B-compatible API; in-sandbox calls under it carry `E2b-Sandbox-Id`. */
export const E2B_PREFIX = '/e2b';

export interface EnvdHandlerDeps {
  sandboxes: EnvdSandboxes;
  /** den's preview domain: `49983-<sandbox>.<previewDomain>` reaches this API too */
  previewDomain: string;
}

export interface EnvdHandler {
  /** true for requests meant for a sandbox's envd: the sandbox-id header under /e2b, or the envd host form */
  /** whether the request is for envd (its head is enough: the fast preview lane asks before Node parses it) */
  matches(req: Pick<IncomingMessage, 'url' | 'headers'>): boolean;
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** ends polled watchers (their agent streams) */
  close(): void;
}

/**
 * E2B's in-sandbox API ("envd") for the unmodified e2b SDK, answered by the daemon on top of each sandbox's agent:
 * Connect RPC (process.Process, filesystem.Filesystem; JSON over HTTP/1.1 as the JS SDK sends it) and envd's plain
 * HTTP endpoints (/files, /health, /envs). Plugged into the daemon's node:http server ahead of Fastify, so the
 * per-call cost is one sandbox lookup plus the agent call.
 *
 * @example
 * const envd = createEnvdHandler({ sandboxes, previewDomain: 'localhost' });
 * http.createServer((req, res) => (envd.matches(req) ? envd.handle(req, res) : api(req, res)));
 */
export function createEnvdHandler(deps: EnvdHandlerDeps): EnvdHandler {
  const paths = new PathResolver();
  const files = filesystemService(paths);
  const hostPattern = envdHostPattern(deps.previewDomain);
  const sandboxIds = new WeakMap<IncomingMessage, string>();

  const rpcHandler = connectNodeAdapter({
    routes(router) {
      router.service(Process, processService(paths));
      router.service(Filesystem, files);
    },
    // Newer SDKs may send fields this schema does not know yet.
    jsonOptions: { ignoreUnknownFields: true },
    contextValues(req) {
      const values = createContextValues();
      const sandboxId = sandboxIds.get(req as IncomingMessage);
      if (sandboxId !== undefined) {
        const target: Promise<EnvdTarget> = resolveTarget(deps.sandboxes, sandboxId, req.headers);
        // Observed by the handler that awaits it; this only keeps an early failure from being "unhandled".
        target.catch(() => undefined);
        values.set(targetKey, target);
      }
      return values;
    },
    fallback(_req, res) {
      sendError(
        res as ServerResponse,
        404,
        'no envd endpoint at this path: the e2b SDK calls process.Process/*, filesystem.Filesystem/*, /files, /health and /envs',
      );
    },
  });

  function sandboxIdOf(req: Pick<IncomingMessage, 'url' | 'headers'>): string | undefined {
    const header = headerValue(req.headers['e2b-sandbox-id']);
    if (header !== undefined && isUnderPrefix(req.url)) return header;
    const host = req.headers.host;
    if (host === undefined) return undefined;
    return hostPattern.exec(stripPort(host).toLowerCase())?.[1];
  }

  return {
    matches(req) {
      return sandboxIdOf(req) !== undefined;
    },

    handle(req, res) {
      const sandboxId = sandboxIdOf(req);
      if (sandboxId === undefined) {
        sendError(res, 400, 'not an envd request: send E2b-Sandbox-Id with a path under /e2b');
        return;
      }
      // Under /e2b the prefix is den's, not envd's: the SDK's base URL is E2B_SANDBOX_URL = http://<den>/e2b.
      if (headerValue(req.headers['e2b-sandbox-id']) !== undefined && isUnderPrefix(req.url)) {
        req.url = req.url!.slice(E2B_PREFIX.length) || '/';
      }
      const url = new URL(req.url ?? '/', 'http://envd');
      sandboxIds.set(req, sandboxId);
      void handlePlainHttp(req, res, url, sandboxId, { sandboxes: deps.sandboxes, paths }).then(
        (handled) => {
          if (!handled) rpcHandler(req, res);
        },
        (err: unknown) => sendError(res, err instanceof DenError ? err.status : 500, (err as Error).message),
      );
    },

    close() {
      files.closeWatchers();
    },
  };
}

function isUnderPrefix(url: string | undefined): boolean {
  return (
    url !== undefined && (url === E2B_PREFIX || url.startsWith(`${E2B_PREFIX}/`) || url.startsWith(`${E2B_PREFIX}?`))
  );
}

function envdHostPattern(domain: string): RegExp {
  const escaped = domain
    .toLowerCase()
    .replace(/\.$/, '')
    .replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${ENVD_PORT}-([a-z0-9][a-z0-9-]*)\\.${escaped}\\.?$`);
}

function stripPort(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon === -1 || host.includes(']', colon)) return host;
  return /^[0-9]*$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
}

function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const json = JSON.stringify({ code: status, message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}
