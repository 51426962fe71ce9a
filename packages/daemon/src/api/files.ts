import type { Readable } from 'node:stream';
import { checkSandboxPath, ErrorResponse, FilePathQuery, ListQuery, MakeDirRequest, MoveRequest } from '@den/shared';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './app.js';

type Ref = { ref: string };
type PathQuery = { path: string; user?: string };
const errors = {
  204: Type.Null(),
  400: ErrorResponse,
  403: ErrorResponse,
  404: ErrorResponse,
  409: ErrorResponse,
  507: ErrorResponse,
};

/** Files API: every path is checked here (absolute, no `..`) and again by the agent inside the sandbox. */
export function fileRoutes(app: FastifyInstance, { sandboxes }: ApiDeps): void {
  app.get(
    '/v1/sandboxes/:ref/files',
    { schema: { querystring: FilePathQuery, response: errors } },
    async (req, reply) => {
      const q = req.query as PathQuery;
      const agent = await sandboxes.agentFor((req.params as Ref).ref);
      const file = await agent.readFile(checkSandboxPath(q.path), { user: q.user });
      reply.header('content-type', 'application/octet-stream');
      if (file.size !== undefined) reply.header('content-length', file.size);
      return reply.send(file.stream);
    },
  );

  app.put(
    '/v1/sandboxes/:ref/files',
    { schema: { querystring: FilePathQuery, response: errors }, bodyLimit: Number.MAX_SAFE_INTEGER },
    async (req) => {
      const q = req.query as PathQuery;
      const path = checkSandboxPath(q.path);
      const agent = await sandboxes.agentFor((req.params as Ref).ref);
      return agent.writeFile(path, req.body as Readable, { user: q.user });
    },
  );

  app.delete(
    '/v1/sandboxes/:ref/files',
    { schema: { querystring: FilePathQuery, response: errors } },
    async (req, reply) => {
      const q = req.query as PathQuery;
      await (await sandboxes.agentFor((req.params as Ref).ref)).remove(checkSandboxPath(q.path));
      return reply.status(204).send();
    },
  );

  app.get('/v1/sandboxes/:ref/files/list', { schema: { querystring: ListQuery, response: errors } }, async (req) => {
    const q = req.query as PathQuery & { depth?: number };
    const agent = await sandboxes.agentFor((req.params as Ref).ref);
    return { entries: await agent.list(checkSandboxPath(q.path), q.depth ?? 1) };
  });

  app.get(
    '/v1/sandboxes/:ref/files/stat',
    { schema: { querystring: FilePathQuery, response: errors } },
    async (req) => {
      const q = req.query as PathQuery;
      return (await sandboxes.agentFor((req.params as Ref).ref)).stat(checkSandboxPath(q.path));
    },
  );

  app.post('/v1/sandboxes/:ref/files/mkdir', { schema: { body: MakeDirRequest, response: errors } }, async (req) => {
    const b = req.body as PathQuery;
    return (await sandboxes.agentFor((req.params as Ref).ref)).makeDir(checkSandboxPath(b.path), { user: b.user });
  });

  app.post('/v1/sandboxes/:ref/files/move', { schema: { body: MoveRequest, response: errors } }, async (req) => {
    const b = req.body as { from: string; to: string; user?: string };
    const agent = await sandboxes.agentFor((req.params as Ref).ref);
    return agent.move(checkSandboxPath(b.from, 'from'), checkSandboxPath(b.to, 'to'), { user: b.user });
  });
}
