import { ApiKeyList, CreateApiKeyRequest, CreatedApiKey, ErrorResponse } from '@den/shared';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from './app.js';

const errors = { 400: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 500: ErrorResponse };

/** API keys (for the E2B-compatible API): create (the key is returned once), list, remove. */
export function keyRoutes(app: FastifyInstance, { apiKeys }: ApiDeps): void {
  app.post(
    '/v1/keys',
    { schema: { body: CreateApiKeyRequest, response: { 201: CreatedApiKey, ...errors } } },
    async (req, reply) => reply.status(201).send(await apiKeys.create((req.body as CreateApiKeyRequest).name)),
  );
  app.get('/v1/keys', { schema: { response: { 200: ApiKeyList } } }, async () => ({ keys: await apiKeys.list() }));
  app.delete(
    '/v1/keys/:name',
    {
      schema: {
        params: Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      await apiKeys.remove((req.params as { name: string }).name);
      return reply.status(204).send();
    },
  );
}
