import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { e2bControlRoutes } from '../../../src/e2b/control/routes.js';
import { ApiKeyService } from '../../../src/services/api-keys.js';
import type { SandboxService } from '../../../src/services/sandbox-service.js';
import { KyselyApiKeyStore } from '../../../src/store/api-key-store.js';
import { type DenDb, openDatabase } from '../../../src/store/database.js';

/**
 * The E2B control routes' gatekeeping (API key, request validation, error shape), with real API keys in a real
 * SQLite database. These requests must be refused before any sandbox work: the sandbox service here fails the
 * test if it is touched. Sandbox operations are tested end to end with real sandboxes (e2e/test/e2b-control).
 */
describe('E2B control routes: keys, validation, error bodies', () => {
  let dir: string;
  let db: DenDb;
  let app: FastifyInstance;
  let key: string;
  const untouchable = new Proxy({} as SandboxService, {
    get: (_t, prop) => {
      throw new Error(`the sandbox service must not be used here (called ${String(prop)})`);
    },
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'den-e2b-'));
    ({ db } = await openDatabase({ sqlitePath: join(dir, 'den.db') }));
    const apiKeys = new ApiKeyService(new KyselyApiKeyStore(db));
    key = (await apiKeys.create('test')).key;
    app = Fastify({ ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } } });
    await app.register(
      (scope) =>
        e2bControlRoutes(scope, {
          sandboxes: untouchable,
          apiKeys,
          domain: () => 'localhost:7070',
          templateAliases: {},
          metrics: { sample: async () => undefined },
        }),
      { prefix: '/e2b' },
    );
  });
  after(async () => {
    await app?.close();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('no key, an unknown key or a malformed header is 401 with E2B body {code: 401, message}', async () => {
    for (const headers of [
      {},
      { 'x-api-key': 'den_unknown' },
      { authorization: 'Bearer e2b_123' },
      { authorization: key },
    ] as Record<string, string>[]) {
      const res = await app.inject({ method: 'GET', url: '/e2b/v2/sandboxes', headers });
      assert.equal(res.statusCode, 401, JSON.stringify(headers));
      const body = res.json() as { code: number; message: string };
      assert.equal(body.code, 401);
      assert.match(body.message, /den key create/);
    }
  });

  test('a bad body is 400 with E2B body naming the field', async () => {
    for (const [payload, field] of [
      [{ timeout: 10 }, /templateID/],
      [{ templateID: 'base', timeout: -1 }, /timeout/],
      [{ templateID: 'base', envVars: { 'BAD-NAME': 'x' } }, /BAD-NAME/],
    ] as const) {
      for (const headers of [{ 'x-api-key': key }, { authorization: `Bearer ${key}` }]) {
        const res = await app.inject({ method: 'POST', url: '/e2b/v2/sandboxes', headers, payload });
        assert.equal(res.statusCode, 400, res.body);
        const body = res.json() as { code: number; message: string };
        assert.equal(body.code, 400);
        assert.match(body.message, field);
      }
    }
    const timeout = await app.inject({
      method: 'POST',
      url: '/e2b/sandboxes/abc/timeout',
      headers: { 'x-api-key': key },
      payload: {},
    });
    assert.equal(timeout.statusCode, 400);
    assert.match((timeout.json() as { message: string }).message, /timeout is required/);
  });

  test('unsupported options are refused before a sandbox is made', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/e2b/v2/sandboxes',
      headers: { 'x-api-key': key },
      payload: { templateID: 'base', network: { egressProxy: { address: 'proxy:1080' } } },
    });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json(), {
      code: 400,
      message: 'network.egressProxy is not supported by den: den does not tunnel sandbox traffic through a proxy',
    });
  });

  test('a foreign page token or state is a 400', async () => {
    for (const url of ['/e2b/v2/sandboxes?nextToken=xyz', '/e2b/v2/sandboxes?state=stopped']) {
      const res = await app.inject({ method: 'GET', url, headers: { 'x-api-key': key } });
      assert.equal(res.statusCode, 400, url);
      assert.equal((res.json() as { code: number }).code, 400);
    }
  });
});
