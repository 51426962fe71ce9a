import {
  CreateSandboxRequest,
  ErrorResponse,
  Image,
  LifecycleRequest,
  NetworkSettings,
  PortList,
  PreviewSettings,
  Sandbox,
  SandboxList,
  SandboxRef,
  SandboxState,
  SetTimeoutRequest,
  Status,
} from '@den/shared';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { SandboxRecord } from '../services/ports.js';
import { toSandbox } from '../services/sandbox-service.js';
import type { ApiDeps } from './app.js';

const errors = { 204: Type.Null(), 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 500: ErrorResponse };
type Ref = { ref: string };

export function sandboxRoutes(app: FastifyInstance, { sandboxes, snapshots, status, previews }: ApiDeps): void {
  const view = (rec: SandboxRecord) => toSandbox(rec, previews.domainWithPort());
  app.get('/v1/status', { schema: { response: { 200: Status } } }, async () => status.status());
  app.get('/v1/images', { schema: { response: { 200: Type.Object({ images: Type.Array(Image) }) } } }, async () => ({
    images: await status.images(),
  }));

  app.post(
    '/v1/sandboxes',
    { schema: { body: CreateSandboxRequest, response: { 201: Sandbox, ...errors } } },
    async (req, reply) => {
      const body = req.body as CreateSandboxRequest;
      const rec =
        body.fromSnapshot !== undefined
          ? await snapshots.createSandbox({ ...body, fromSnapshot: body.fromSnapshot })
          : await sandboxes.create(body);
      return reply.status(201).send(view(rec));
    },
  );
  app.get(
    '/v1/sandboxes',
    { schema: { querystring: Type.Object({ state: Type.Optional(SandboxState) }), response: { 200: SandboxList } } },
    async (req) => {
      const { state } = req.query as { state?: SandboxState };
      return { sandboxes: (await sandboxes.list(state ? { state } : {})).map(view) };
    },
  );
  app.get(
    '/v1/sandboxes/:ref',
    { schema: { params: SandboxRef, response: { 200: Sandbox, ...errors } } },
    async (req) => view(await sandboxes.resolve((req.params as Ref).ref)),
  );
  for (const action of ['start', 'stop', 'restart', 'pause', 'resume'] as const) {
    app.post(
      `/v1/sandboxes/:ref/${action}`,
      { schema: { params: SandboxRef, response: { 200: Sandbox, ...errors } } },
      async (req) => view(await sandboxes[action]((req.params as Ref).ref)),
    );
  }
  app.put(
    '/v1/sandboxes/:ref/network',
    { schema: { params: SandboxRef, body: NetworkSettings, response: { 200: Sandbox, ...errors } } },
    async (req) => view(await sandboxes.updateNetwork((req.params as Ref).ref, req.body as NetworkSettings)),
  );
  app.post(
    '/v1/sandboxes/:ref/timeout',
    {
      schema: {
        description:
          "sets the sandbox's timeout to timeoutMs from now (0 = no timeout); its onTimeout action runs then",
        params: SandboxRef,
        body: SetTimeoutRequest,
        response: { 200: Sandbox, ...errors },
      },
    },
    async (req) => view(await sandboxes.setTimeout((req.params as Ref).ref, (req.body as SetTimeoutRequest).timeoutMs)),
  );
  app.put(
    '/v1/sandboxes/:ref/lifecycle',
    {
      schema: {
        description:
          'changes the idle timeout (idleTimeoutMs: pause after that long without activity; 0 = never) and/or the ' +
          'action at the timeout (onTimeout); the idle clock restarts now',
        params: SandboxRef,
        body: LifecycleRequest,
        response: { 200: Sandbox, ...errors },
      },
    },
    async (req) => view(await sandboxes.updateLifecycle((req.params as Ref).ref, req.body as LifecycleRequest)),
  );
  app.put(
    '/v1/sandboxes/:ref/preview',
    { schema: { params: SandboxRef, body: PreviewSettings, response: { 200: Sandbox, ...errors } } },
    async (req) => view(await sandboxes.updatePreview((req.params as Ref).ref, req.body as PreviewSettings)),
  );
  app.get(
    '/v1/sandboxes/:ref/ports',
    { schema: { params: SandboxRef, response: { 200: PortList, ...errors } } },
    async (req) => {
      const { sandboxId, sockets } = await sandboxes.listeningPorts((req.params as Ref).ref);
      return {
        ports: sockets.map((s) => ({
          port: s.port,
          address: s.address,
          protocol: 'tcp' as const,
          reachable: !isLoopback(s.address),
          urls: { host: previews.hostUrl(sandboxId, s.port), path: previews.pathUrl(sandboxId, s.port) },
        })),
      };
    },
  );
  app.delete('/v1/sandboxes/:ref', { schema: { params: SandboxRef, response: errors } }, async (req, reply) => {
    await sandboxes.remove((req.params as Ref).ref);
    return reply.status(204).send();
  });
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}
