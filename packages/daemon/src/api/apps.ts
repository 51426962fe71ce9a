import type { Readable } from 'node:stream';
import type { ProcessHandle } from '@den/agent/client';
import { AppInfo, AppStartRequest, checkSandboxPath, ErrorResponse, FrameType, SandboxRef } from '@den/shared';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { APP_LOG, type AppStatus } from '../services/app-preview/app-service.js';
import { extractArchive } from '../services/archive.js';
import type { ApiDeps } from './app.js';

type Ref = { ref: string };
const errors = { 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 422: ErrorResponse };
const noContent = { 204: Type.Null(), ...errors };

/** Project upload (tar), live preview apps and their logs (Server-Sent Events). */
export function appRoutes(app: FastifyInstance, { sandboxes, apps, previews }: ApiDeps): void {
  const withUrls = (sandboxId: string, s: AppStatus) => ({
    ...s,
    urls: { host: previews.hostUrl(sandboxId, s.port), path: previews.pathUrl(sandboxId, s.port) },
  });

  app.put(
    '/v1/sandboxes/:ref/archive',
    {
      schema: {
        params: SandboxRef,
        querystring: Type.Object({ path: Type.String({ minLength: 1 }), user: Type.Optional(Type.String()) }),
        response: { 200: Type.Object({ files: Type.Integer() }), ...errors },
      },
      bodyLimit: Number.MAX_SAFE_INTEGER,
    },
    async (req) => {
      const q = req.query as { path: string; user?: string };
      const agent = await sandboxes.agentFor((req.params as Ref).ref);
      return extractArchive(agent, checkSandboxPath(q.path), req.body as Readable, q.user);
    },
  );

  app.post(
    '/v1/sandboxes/:ref/app',
    { schema: { params: SandboxRef, body: AppStartRequest, response: { 200: AppInfo, ...errors } } },
    async (req) => {
      const rec = await sandboxes.resolve((req.params as Ref).ref);
      return withUrls(rec.id, await apps.start(rec.id, req.body as AppStartRequest));
    },
  );
  app.get(
    '/v1/sandboxes/:ref/app',
    { schema: { params: SandboxRef, response: { 200: AppInfo, ...errors } } },
    async (req) => {
      const rec = await sandboxes.resolve((req.params as Ref).ref);
      return withUrls(rec.id, await apps.status(rec.id));
    },
  );
  app.delete('/v1/sandboxes/:ref/app', { schema: { params: SandboxRef, response: noContent } }, async (req, reply) => {
    await apps.stop((req.params as Ref).ref);
    return reply.status(204).send();
  });

  app.get(
    '/v1/sandboxes/:ref/app/logs',
    {
      schema: {
        params: SandboxRef,
        querystring: Type.Object({
          follow: Type.Optional(Type.Boolean()),
          lines: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
        }),
      },
    },
    async (req, reply) => {
      const q = req.query as { follow?: boolean; lines?: number };
      const agent = await sandboxes.agentFor((req.params as Ref).ref);
      const tail = ['tail', '-n', String(q.lines ?? 1000), ...(q.follow ? ['-F'] : []), APP_LOG];
      const handle = await agent.openProcess({ cmd: tail });
      return streamLines(reply, handle);
    },
  );
}

/**
 * Server-Sent Events: one `data:` event per log line, `event: end` when the log stream ends. The tail process is
 * killed (its stream reset) when the client goes away.
 */
async function streamLines(reply: FastifyReply, handle: ProcessHandle): Promise<FastifyReply> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  res.on('close', () => handle.close());
  let partial = '';
  try {
    for await (const frame of handle.frames()) {
      if (frame.type !== FrameType.STDOUT && frame.type !== FrameType.STDERR) continue;
      const text = Buffer.from(frame.payload).toString('utf8');
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) res.write(`data: ${line}\n\n`);
    }
    if (partial) res.write(`data: ${partial}\n\n`);
    res.write('event: end\ndata: \n\n');
  } catch {
    // the client went away or the sandbox stopped; the stream just ends
  }
  res.end();
  return reply;
}
