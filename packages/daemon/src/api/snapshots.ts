import {
  CreateImageRequest,
  CreateSnapshotRequest,
  ErrorResponse,
  Image,
  SandboxRef,
  Snapshot,
  SnapshotList,
} from '@den/shared';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './app.js';

const errors = { 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 422: ErrorResponse, 500: ErrorResponse };
const SnapshotRef = Type.Object({ ref: Type.String({ minLength: 1, maxLength: 63 }) });
const ImageName = Type.Object({ name: Type.String({ minLength: 1, maxLength: 128 }) });

/** Snapshots in the object store, and images made from sandboxes. */
export function snapshotRoutes(app: FastifyInstance, { snapshots, images }: ApiDeps): void {
  app.post(
    '/v1/sandboxes/:ref/snapshots',
    {
      schema: {
        description:
          "stores the sandbox's files (and, for runsc, its memory) in the object store; the sandbox keeps running",
        params: SandboxRef,
        body: Type.Optional(CreateSnapshotRequest),
        response: { 201: Snapshot, ...errors },
      },
    },
    async (req, reply) => {
      const { ref } = req.params as { ref: string };
      const body = (req.body ?? {}) as CreateSnapshotRequest;
      return reply.status(201).send(await snapshots.create(ref, body.name !== undefined ? { name: body.name } : {}));
    },
  );
  app.get('/v1/snapshots', { schema: { response: { 200: SnapshotList } } }, async () => ({
    snapshots: await snapshots.list(),
  }));
  app.get(
    '/v1/snapshots/:ref',
    { schema: { params: SnapshotRef, response: { 200: Snapshot, ...errors } } },
    async (req) => snapshots.get((req.params as { ref: string }).ref),
  );
  app.delete(
    '/v1/snapshots/:ref',
    { schema: { params: SnapshotRef, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      await snapshots.remove((req.params as { ref: string }).ref);
      return reply.status(204).send();
    },
  );

  app.post(
    '/v1/images',
    {
      schema: {
        description: "a new image whose top layer is the sandbox's files (the sandbox keeps running)",
        body: CreateImageRequest,
        response: { 201: Image, ...errors },
      },
    },
    async (req, reply) => {
      const { name, fromSandbox } = req.body as CreateImageRequest;
      return reply.status(201).send(await images.createFromSandbox(name, fromSandbox));
    },
  );
  app.delete(
    '/v1/images/:name',
    { schema: { params: ImageName, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      await images.remove((req.params as { name: string }).name);
      return reply.status(204).send();
    },
  );
}
