import { DEN_VERSION } from '@den/shared';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerFactory } from 'fastify';
import { e2bControlRoutes } from '../e2b/control/routes.js';
import type { SandboxMetricsSource } from '../e2b/control/sandbox-metrics.js';
import type { ApiKeyService } from '../services/api-keys.js';
import type { AppPreviewService } from '../services/app-preview/app-service.js';
import type { ImageService } from '../services/images.js';
import type { PreviewUrls } from '../services/preview-urls.js';
import type { SandboxService } from '../services/sandbox-service.js';
import type { SnapshotService } from '../services/snapshots.js';
import type { StatusService } from '../services/status-service.js';
import { appRoutes } from './apps.js';
import { installErrorHandling } from './errors.js';
import { fileRoutes } from './files.js';
import { keyRoutes } from './keys.js';
import { processRoutes } from './processes.js';
import { sandboxRoutes } from './sandboxes.js';
import { snapshotRoutes } from './snapshots.js';

export interface ApiDeps {
  sandboxes: SandboxService;
  status: StatusService;
  previews: PreviewUrls;
  apps: AppPreviewService;
  apiKeys: ApiKeyService;
  snapshots: SnapshotService;
  images: ImageService;
  /** E2B-compatible control API: template name -> den image, and where sandbox metrics come from */
  e2b: { templateAliases: Record<string, string>; metrics: SandboxMetricsSource };
}

let requestCounter = 0;

/** Builds the HTTP app without listening, so tests can `inject()` and main.ts can `listen()`. */
export async function createApp(
  deps: ApiDeps,
  opts: { logger?: FastifyBaseLogger; serverFactory?: FastifyServerFactory } = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.serverFactory ? { serverFactory: opts.serverFactory } : {}),
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    genReqId: () => `req-${process.pid.toString(36)}-${(++requestCounter).toString(36)}`,
    ajv: {
      // Unknown fields are an error (not silently dropped), so typos in requests are caught.
      customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false },
    },
    // Exec streams and file transfers can be long; idle sockets are closed by the client.
    requestTimeout: 0,
    forceCloseConnections: true,
  });
  installErrorHandling(app);
  // File contents arrive as raw streams: the route hands the request stream to the agent without buffering.
  app.addContentTypeParser(['application/octet-stream', 'application/x-tar'], (_req, payload, done) =>
    done(null, payload),
  );
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'den API', version: DEN_VERSION, description: 'Native REST API v1 of the den daemon' },
    },
  });
  await app.register(websocket, { options: { maxPayload: 16 * 1024 * 1024 } });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/v1/health', async () => ({ ok: true }));
  await app.register(async (scope) => {
    sandboxRoutes(scope, deps);
    processRoutes(scope, deps);
    fileRoutes(scope, deps);
    appRoutes(scope, deps);
    keyRoutes(scope, deps);
    snapshotRoutes(scope, deps);
  });
  await app.register(
    (scope) =>
      e2bControlRoutes(scope, {
        sandboxes: deps.sandboxes,
        apiKeys: deps.apiKeys,
        domain: () => deps.previews.domainWithPort(),
        templateAliases: deps.e2b.templateAliases,
        metrics: deps.e2b.metrics,
      }),
    { prefix: '/e2b' },
  );
  return app;
}
