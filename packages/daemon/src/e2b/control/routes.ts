import { randomBytes } from 'node:crypto';
import { DenError } from '@den/shared';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SandboxRecord } from '../../services/ports.js';
import type { SandboxService } from '../../services/sandbox-service.js';
import { E2BApiError, INVALID_API_KEY_MESSAGE, installE2BErrorHandling } from './errors.js';
import {
  comparePositions,
  DEFAULT_TIMEOUT_S,
  decodePageToken,
  e2bState,
  encodePageToken,
  imageForTemplate,
  listPosition,
  matchesMetadata,
  parseMetadataFilter,
  parseStates,
  type TemplateAliases,
  templateNotFound,
  toCreateRequest,
  toE2BSandbox,
  toListedSandbox,
  toNetworkUpdate,
  toSandboxDetail,
} from './mapping.js';
import type { SandboxMetricsSource } from './sandbox-metrics.js';
import {
  E2BConnectSandbox,
  E2BListQuery,
  E2BMetricsQuery,
  E2BNetworkUpdate,
  E2BNewSandbox,
  E2BPauseRequest,
  E2BSandboxParams,
  E2BSetTimeout,
} from './schemas.js';

export interface E2BControlDeps {
  sandboxes: SandboxService;
  /** resolves an API key; undefined = unknown key */
  apiKeys: { verify(key: string): Promise<unknown> };
  /** the part of preview hosts after `<port>-<id>.` (PreviewUrls.domainWithPort): E2B's sandbox `domain` */
  domain: () => string;
  templateAliases: TemplateAliases;
  metrics: SandboxMetricsSource;
}

const DEFAULT_PAGE_LIMIT = 100;
/** E2B's own routes are documented by E2B's OpenAPI document, not den's. */
const hide = { hide: true };

type Params = { sandboxID: string };

/**
 * E2B's control API (the part of E2B's REST API the `e2b` SDK calls for sandboxes), mapped onto den's sandbox
 * service: one set of sandboxes, whichever API created them. Registered under the prefix `/e2b`, so clients set
 * `E2B_API_URL=http://<den>/e2b`. Every route needs a den API key in `X-API-KEY` (or `Authorization: Bearer`),
 * and every error leaves in E2B's shape `{code, message}`.
 */
export async function e2bControlRoutes(scope: FastifyInstance, deps: E2BControlDeps): Promise<void> {
  const { sandboxes } = deps;
  installE2BErrorHandling(scope);
  scope.addHook('onRequest', async (req) => {
    if (!(await deps.apiKeys.verify(apiKeyOf(req)))) throw new E2BApiError(401, INVALID_API_KEY_MESSAGE);
  });

  const create = (version: 'v1' | 'v2') => async (req: FastifyRequest, reply: FastifyReply) => {
    const body = req.body as E2BNewSandbox;
    const request = toCreateRequest(body, deps.templateAliases, version);
    // v2 secures envd for every sandbox (E2B: "All system communication with the sandbox is secured"); the
    // deprecated v1 call only when asked with `secure: true`.
    const secure = version === 'v2' || body.secure === true;
    let rec: SandboxRecord;
    try {
      rec = await sandboxes.create(request, secure ? { envdAccessToken: newEnvdAccessToken() } : {});
    } catch (err) {
      if (err instanceof DenError && err.code === 'IMAGE_NOT_FOUND') throw templateNotFound(body.templateID);
      throw err;
    }
    return reply.status(201).send(toE2BSandbox(rec, deps.domain()));
  };
  scope.post('/v2/sandboxes', { schema: { ...hide, body: E2BNewSandbox } }, create('v2'));
  scope.post('/sandboxes', { schema: { ...hide, body: E2BNewSandbox } }, create('v1'));

  scope.get('/v2/sandboxes', { schema: { ...hide, querystring: E2BListQuery } }, async (req, reply) => {
    const q = req.query as E2BListQuery;
    const metadata = parseMetadataFilter(q.metadata);
    const states = parseStates(q.state);
    const image = q.template ? imageForTemplate(q.template, deps.templateAliases) : undefined;
    const descending = (q.order ?? 'desc') === 'desc';
    const after = q.nextToken ? decodePageToken(q.nextToken) : undefined;
    const matching = (await sandboxes.list())
      .filter((r) => matchesMetadata(r, metadata))
      .filter((r) => !states || states.has(e2bState(r)))
      .filter((r) => !image || r.image === image)
      .filter((r) => !q.startedAfter || Date.parse(listPosition(r).startedAt) >= Date.parse(q.startedAfter))
      .map((r) => ({ rec: r, position: listPosition(r) }))
      .sort((a, b) => (descending ? -1 : 1) * comparePositions(a.position, b.position))
      .filter((r) => !after || (descending ? -1 : 1) * comparePositions(r.position, after) > 0);
    const limit = q.limit ?? DEFAULT_PAGE_LIMIT;
    const page = matching.slice(0, limit);
    const last = page[page.length - 1];
    if (matching.length > limit && last) void reply.header('X-Next-Token', encodePageToken(last.position));
    return page.map((r) => toListedSandbox(r.rec));
  });
  // Deprecated v1 list: running sandboxes only, no pagination.
  scope.get('/sandboxes', { schema: { ...hide, querystring: E2BListQuery } }, async (req) => {
    const metadata = parseMetadataFilter((req.query as E2BListQuery).metadata);
    return (await sandboxes.list())
      .filter((r) => e2bState(r) === 'running' && matchesMetadata(r, metadata))
      .map(toListedSandbox);
  });

  scope.get('/sandboxes/:sandboxID', { schema: { ...hide, params: E2BSandboxParams } }, async (req) =>
    toSandboxDetail(await sandboxes.resolve((req.params as Params).sandboxID), deps.domain()),
  );

  scope.delete('/sandboxes/:sandboxID', { schema: { ...hide, params: E2BSandboxParams } }, async (req, reply) => {
    await sandboxes.remove((req.params as Params).sandboxID);
    return reply.status(204).send();
  });

  scope.post(
    '/sandboxes/:sandboxID/timeout',
    { schema: { ...hide, params: E2BSandboxParams, body: E2BSetTimeout } },
    async (req, reply) => {
      const { timeout } = req.body as E2BSetTimeout;
      await sandboxes.setTimeout((req.params as Params).sandboxID, timeout * 1000);
      return reply.status(204).send();
    },
  );

  // Pause: memory and filesystem on runsc (filesystem only on runc); connect resumes.
  scope.post(
    '/sandboxes/:sandboxID/pause',
    { schema: { ...hide, params: E2BSandboxParams, body: E2BPauseRequest }, preValidation: emptyBodyIsObject },
    async (req, reply) => {
      const rec = await sandboxes.resolve((req.params as Params).sandboxID);
      if (e2bState(rec) === 'paused') throw new E2BApiError(409, `sandbox ${rec.id} is already paused`);
      await sandboxes.pause(rec.id);
      return reply.status(204).send();
    },
  );

  /** Connect: a running sandbox answers 200 and its timeout is only extended; a paused one starts (201). */
  const connect =
    (version: 'v1' | 'v2', opts: { refuseRunning?: boolean } = {}) =>
    async (req: FastifyRequest, reply: FastifyReply) => {
      const body = req.body as E2BConnectSandbox;
      const timeoutMs = (body.timeout ?? DEFAULT_TIMEOUT_S[version]) * 1000;
      const rec = await sandboxes.resolve((req.params as Params).sandboxID);
      if (e2bState(rec) === 'running') {
        if (opts.refuseRunning) throw new E2BApiError(409, `sandbox ${rec.id} is already running`);
        const updated = await sandboxes.setTimeout(rec.id, timeoutMs, { onlyExtend: true });
        return reply.status(200).send(toE2BSandbox(updated, deps.domain()));
      }
      await sandboxes.resume(rec.id);
      const resumed = await sandboxes.setTimeout(rec.id, timeoutMs);
      return reply.status(201).send(toE2BSandbox(resumed, deps.domain()));
    };
  const connectSchema = { ...hide, params: E2BSandboxParams, body: E2BConnectSandbox };
  scope.post(
    '/v2/sandboxes/:sandboxID/connect',
    { schema: connectSchema, preValidation: emptyBodyIsObject },
    connect('v2'),
  );
  scope.post(
    '/sandboxes/:sandboxID/connect',
    { schema: connectSchema, preValidation: emptyBodyIsObject },
    connect('v1'),
  );
  scope.post(
    '/sandboxes/:sandboxID/resume',
    { schema: connectSchema, preValidation: emptyBodyIsObject },
    connect('v1', { refuseRunning: true }),
  );

  scope.put(
    '/sandboxes/:sandboxID/network',
    { schema: { ...hide, params: E2BSandboxParams, body: E2BNetworkUpdate } },
    async (req, reply) => {
      await sandboxes.updateNetwork((req.params as Params).sandboxID, toNetworkUpdate(req.body as E2BNetworkUpdate));
      return reply.status(204).send();
    },
  );

  /**
   * Metrics: den measures when asked (no history), so the answer is one sample taken now, if now lies in the
   * requested interval (1 s of slack for the SDK rounding to seconds) and the sandbox runs; otherwise none.
   */
  scope.get(
    '/sandboxes/:sandboxID/metrics',
    { schema: { ...hide, params: E2BSandboxParams, querystring: E2BMetricsQuery } },
    async (req) => {
      const { start, end } = req.query as E2BMetricsQuery;
      const rec = await sandboxes.resolve((req.params as Params).sandboxID);
      const now = Date.now();
      const inRange =
        (start === undefined || start * 1000 <= now + 1000) && (end === undefined || end * 1000 >= now - 1000);
      if (!inRange || rec.state !== 'running') return [];
      const sample = await deps.metrics.sample(rec);
      if (!sample) return [];
      return [
        {
          timestamp: sample.timestamp.toISOString(),
          timestampUnix: Math.floor(sample.timestamp.getTime() / 1000),
          cpuCount: sample.cpuCount,
          cpuUsedPct: sample.cpuUsedPct,
          memUsed: sample.memUsed,
          memTotal: sample.memTotal,
          memCache: sample.memCache,
          diskUsed: sample.diskUsed,
          diskTotal: sample.diskTotal,
        },
      ];
    },
  );
}

/** The API key of a request: `X-API-KEY` (what the SDK sends) or `Authorization: Bearer <key>`. */
function apiKeyOf(req: FastifyRequest): string {
  const header = req.headers['x-api-key'];
  if (typeof header === 'string' && header) return header;
  const auth = req.headers.authorization;
  const m = auth ? /^Bearer\s+(\S+)$/i.exec(auth) : null;
  return m?.[1] ?? '';
}

/** Calls whose body E2B makes optional: no body validates as `{}`. */
async function emptyBodyIsObject(req: FastifyRequest): Promise<void> {
  if (req.body === undefined || req.body === null) req.body = {};
}

/** The per-sandbox secret envd calls carry in X-Access-Token. */
function newEnvdAccessToken(): string {
  return randomBytes(24).toString('base64url');
}
