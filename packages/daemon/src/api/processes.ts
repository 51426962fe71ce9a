import type { Readable } from 'node:stream';
import {
  DenError,
  type ErrorBody,
  ErrorResponse,
  ExecRequest,
  encodeFrame,
  encodeJsonFrame,
  FRAMES_CONTENT_TYPE,
  type Frame,
  FrameDecoder,
  FrameType,
  type ProcessSpec,
  SignalRequest,
} from '@den/shared';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { AgentConnection } from '../services/ports.js';
import type { ApiDeps } from './app.js';
import { validationMessage } from './errors.js';
import { followProcess } from './process-follow.js';

type Ref = { ref: string };
type RefPid = { ref: string; pid: number };
const RefPidParams = Type.Object({
  ref: Type.String({ minLength: 1, maxLength: 64 }),
  pid: Type.Integer({ minimum: 1 }),
});
const errors = { 204: Type.Null(), 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse };
const execSpecCheck = TypeCompiler.Compile(ExecRequest);

type ProcessHandle = Awaited<ReturnType<AgentConnection['openProcess']>>;

export function processRoutes(app: FastifyInstance, { sandboxes }: ApiDeps): void {
  // Streamed exec without stdin: the agent's frame stream is relayed to the HTTP response as it is.
  app.post('/v1/sandboxes/:ref/exec', { schema: { body: ExecRequest, response: errors } }, async (req, reply) => {
    const ref = (req.params as Ref).ref;
    const agent = await sandboxes.agentFor(ref);
    const spec = req.body as ProcessSpec;
    const handle = await agent.openProcess(spec);
    handle.end();
    reply.header('content-type', FRAMES_CONTENT_TYPE);
    if (spec.background) {
      // A background process outlives a pause with memory, and so does its output stream to this client.
      const { id } = await sandboxes.resolve(ref);
      const followed = followProcess(handle, id, {
        pausing: (sandboxId) => sandboxes.pausing(sandboxId),
        untilRunning: (sandboxId, startedAt) => sandboxes.untilRunning(sandboxId, startedAt),
        reconnect: async (sandboxId, pid, from) => (await sandboxes.agentFor(sandboxId)).connectProcess(pid, { from }),
      });
      reply.raw.on('close', () => followed.close());
      return reply.send(followed.stream);
    }
    // A client that goes away must not leave a foreground process running: resetting the agent stream makes
    // the agent kill it.
    reply.raw.on('close', () => handle.close());
    return reply.send(handle.stream);
  });

  app.get('/v1/sandboxes/:ref/exec/ws', { websocket: true }, (socket, req) => {
    const ref = (req.params as Ref).ref;
    attachWebSocket(socket, async (firstFrameType, payload) => {
      if (firstFrameType !== FrameType.SPEC) {
        throw new DenError('INVALID_ARGUMENT', 'the first message must be a SPEC frame with the command to run');
      }
      const spec = JSON.parse(Buffer.from(payload).toString('utf8')) as unknown;
      if (!execSpecCheck.Check(spec)) {
        const issues = [...execSpecCheck.Errors(spec)].map((e) => ({
          instancePath: e.path,
          keyword: 'schema',
          message: e.message,
          params: {},
        }));
        throw new DenError('INVALID_ARGUMENT', validationMessage('spec', issues));
      }
      const agent = await sandboxes.agentFor(ref);
      return agent.openProcess(spec as ProcessSpec);
    });
  });

  app.get('/v1/sandboxes/:ref/processes/:pid/ws', { websocket: true }, (socket, req) => {
    const { ref, pid } = req.params as { ref: string; pid: string };
    const handlePromise = (async () => {
      const n = Number(pid);
      if (!Number.isInteger(n) || n < 1)
        throw new DenError('INVALID_ARGUMENT', `pid "${pid}" must be a positive integer`);
      const agent = await sandboxes.agentFor(ref);
      return agent.connectProcess(n);
    })();
    attachWebSocket(socket, undefined, handlePromise);
  });

  app.get('/v1/sandboxes/:ref/processes', { schema: { response: errors } }, async (req) => ({
    processes: await (await sandboxes.agentFor((req.params as Ref).ref)).listProcesses(),
  }));
  app.post(
    '/v1/sandboxes/:ref/processes/:pid/signal',
    { schema: { params: RefPidParams, body: SignalRequest, response: errors } },
    async (req, reply) => {
      const { ref, pid } = req.params as RefPid;
      await (await sandboxes.agentFor(ref)).signal(pid, (req.body as { signal: string }).signal);
      return reply.status(204).send();
    },
  );
  app.post(
    '/v1/sandboxes/:ref/processes/:pid/stdin',
    { schema: { params: RefPidParams, response: errors } },
    async (req, reply) => {
      const { ref, pid } = req.params as RefPid;
      const chunks: Buffer[] = [];
      for await (const chunk of req.body as Readable) chunks.push(chunk as Buffer);
      await (await sandboxes.agentFor(ref)).sendStdin(pid, Buffer.concat(chunks));
      return reply.status(204).send();
    },
  );
}

/**
 * Relays a process between a WebSocket (one frame per binary message) and an agent stream. Either the first
 * client frame opens the process (`open`), or the handle is given (attach to an existing process).
 */
function attachWebSocket(
  socket: WebSocket,
  open: ((type: number, payload: Uint8Array) => Promise<ProcessHandle>) | undefined,
  given?: Promise<ProcessHandle>,
): void {
  let handle: Promise<ProcessHandle> | undefined = given;
  let ended = false;
  const fail = (err: unknown) => {
    if (ended) return;
    ended = true;
    const body: ErrorBody =
      err instanceof DenError
        ? err.toJSON()
        : { code: 'INTERNAL', message: `stream failed: ${(err as Error).message}` };
    socket.send(encodeJsonFrame(FrameType.ERROR, body), () => socket.close(1000));
  };
  const relay = (h: ProcessHandle) => {
    const decoder = new FrameDecoder();
    h.stream.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) socket.send(encodeFrame(f.type, f.payload));
    });
    h.stream.on('end', () => {
      ended = true;
      socket.close(1000);
    });
    h.stream.on('error', fail);
  };
  if (handle) handle.then(relay, fail);
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (ended) return;
    if (!isBinary) return fail(new DenError('INVALID_ARGUMENT', 'send frames as binary WebSocket messages'));
    let frames: Frame[];
    try {
      frames = new FrameDecoder().push(data);
    } catch (err) {
      return fail(new DenError('INVALID_ARGUMENT', (err as Error).message));
    }
    for (const f of frames) {
      if (!handle) {
        if (!open) return;
        handle = open(f.type, f.payload);
        handle.then(relay, fail);
        continue;
      }
      void handle.then((h) => h.send(f.type, f.payload), fail);
    }
  });
  socket.on('close', () => {
    ended = true;
    void handle?.then(
      (h) => h.close(),
      () => undefined,
    );
  });
}
