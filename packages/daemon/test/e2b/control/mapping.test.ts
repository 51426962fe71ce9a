import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { newSandboxId } from '@den/shared';
import { E2BApiError } from '../../../src/e2b/control/errors.js';
import {
  decodePageToken,
  e2bState,
  encodePageToken,
  imageForTemplate,
  NO_END,
  parseMetadataFilter,
  parseStates,
  toCreateRequest,
  toListedSandbox,
  toNetworkSettings,
  toSandboxDetail,
} from '../../../src/e2b/control/mapping.js';
import type { SandboxRecord } from '../../../src/services/ports.js';
import { sandboxRecord } from '../../support/sandbox-record.js';

/** A running sandbox with fixed times and a public preview, as the mappings below expect. */
const record = (over: Partial<SandboxRecord> = {}): SandboxRecord =>
  sandboxRecord({
    state: 'running',
    cpus: 0.5,
    diskMB: 2048,
    env: {},
    metadata: { a: 'b' },
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: '2026-01-01T00:00:01.000Z',
    address: '10.88.0.2',
    network: { policy: 'full', allow: [] },
    previewPublic: true,
    previewToken: 'tok',
    ...over,
  });

const is400 = (pattern: RegExp) => (err: unknown) =>
  err instanceof E2BApiError && err.status === 400 && pattern.test(err.message);

describe('metadata filter', () => {
  const filter = { user: 'a b&c=d', 'k/1': 'ü%', plus: '1+1' };

  test('decodes what the e2b SDK sends (three encodings, one undone by the query parser)', () => {
    // SandboxPaginator: encodeURIComponent on keys and values, joined by URLSearchParams, then openapi-fetch
    // encodes the value into the query string; Fastify decodes the query string once.
    const pairs = Object.fromEntries(
      Object.entries(filter).map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)]),
    );
    const onTheWire = encodeURIComponent(new URLSearchParams(pairs).toString());
    assert.deepEqual(parseMetadataFilter(decodeURIComponent(onTheWire)), filter);
  });

  test('decodes a filter encoded once (Python SDK, curl) or not at all', () => {
    assert.deepEqual(parseMetadataFilter('user=abc&app=prod'), { user: 'abc', app: 'prod' });
    assert.deepEqual(parseMetadataFilter(encodeURIComponent('user=abc&app=prod')), { user: 'abc', app: 'prod' });
    assert.deepEqual(parseMetadataFilter(new URLSearchParams({ user: 'a b', p: '1+1' }).toString()), {
      user: 'a b',
      p: '1+1',
    });
    assert.deepEqual(parseMetadataFilter(undefined), {});
    assert.deepEqual(parseMetadataFilter('100%=x'), { '100%': 'x' }, 'a lone % is literal');
  });
});

describe('create request', () => {
  test('defaults: E2B timeouts (300 s v2, 15 s v1), delete at the timeout, public previews', () => {
    assert.deepEqual(toCreateRequest({ templateID: 'base' }, {}, 'v2'), {
      image: 'base',
      timeoutMs: 300_000,
      onTimeout: 'delete',
      preview: { public: true },
    });
    assert.equal(toCreateRequest({ templateID: 'base' }, {}, 'v1').timeoutMs, 15_000);
  });

  test('maps template aliases, timeout, autoPause, envs, metadata and network', () => {
    const req = toCreateRequest(
      {
        templateID: 'code-interpreter-v1',
        timeout: 60,
        autoPause: true,
        envVars: { FOO: 'bar' },
        metadata: { team: 'x' },
        allow_internet_access: false,
        network: { allowOut: ['10.0.0.0/8'], allowPublicTraffic: false },
      },
      { 'code-interpreter-v1': 'base' },
      'v2',
    );
    assert.deepEqual(req, {
      image: 'base',
      timeoutMs: 60_000,
      onTimeout: 'pause',
      env: { FOO: 'bar' },
      metadata: { team: 'x' },
      network: { policy: 'allowlist', allow: ['10.0.0.0/8'] },
      preview: { public: false },
    });
    assert.equal(imageForTemplate('python', { 'code-interpreter-v1': 'base' }), 'python');
    assert.equal(imageForTemplate('toString', {}), 'toString', 'only own keys are aliases');
  });

  test('options den cannot honour are 400s naming them', () => {
    assert.throws(() => toCreateRequest({ templateID: 'base', volumeMounts: [{}] }, {}, 'v2'), is400(/volumeMounts/));
    assert.throws(
      () => toCreateRequest({ templateID: 'base', autoResume: { enabled: true } }, {}, 'v2'),
      is400(/autoResume/),
    );
    assert.throws(
      () => toCreateRequest({ templateID: 'base', iam: { tokens: {} } }, {}, 'v2'),
      is400(/iam is not supported/),
    );
    assert.doesNotThrow(() => toCreateRequest({ templateID: 'base', autoResume: { enabled: false } }, {}, 'v2'));
  });
});

describe('network options', () => {
  test('deny-all with or without allowOut; allowOut alone changes nothing; nothing is the default', () => {
    assert.deepEqual(toNetworkSettings({}, false), { policy: 'none' });
    assert.deepEqual(toNetworkSettings({ denyOut: ['0.0.0.0/0'] }, undefined), { policy: 'none' });
    assert.deepEqual(toNetworkSettings({ denyOut: ['0.0.0.0/0'], allowOut: ['1.1.1.1', 'x.com'] }, undefined), {
      policy: 'allowlist',
      allow: ['1.1.1.1', 'x.com'],
    });
    assert.deepEqual(toNetworkSettings({ allowOut: ['1.1.1.1'] }, undefined), { policy: 'full' });
    assert.deepEqual(toNetworkSettings({}, true), { policy: 'full' });
    assert.equal(toNetworkSettings({}, undefined), undefined);
  });

  test('partial deny lists, rules, egress proxies and HTTPS ports are refused', () => {
    assert.throws(() => toNetworkSettings({ denyOut: ['8.8.8.8/32'] }, undefined), is400(/denyOut.*8\.8\.8\.8/));
    assert.throws(() => toNetworkSettings({ rules: { 'a.com': [] } }, undefined), is400(/network\.rules/));
    assert.throws(() => toNetworkSettings({ egressProxy: { address: 'p:1080' } }, undefined), is400(/egressProxy/));
    assert.throws(() => toNetworkSettings({ httpsPorts: [443] }, undefined), is400(/httpsPorts/));
  });
});

describe('responses', () => {
  test('state: stopped or stopping is paused, everything else running', () => {
    assert.equal(e2bState(record()), 'running');
    assert.equal(e2bState(record({ state: 'creating' })), 'running');
    assert.equal(e2bState(record({ state: 'stopped', desiredState: 'stopped' })), 'paused');
    assert.equal(e2bState(record({ state: 'stopping', desiredState: 'stopped' })), 'paused');
    assert.equal(e2bState(record({ state: 'running', desiredState: 'stopped' })), 'paused');
  });

  test('listed and detailed sandboxes carry E2B field names and units', () => {
    const rec = record({
      timeoutAt: '2026-01-01T00:05:01.000Z',
      onTimeout: 'stop',
      network: { policy: 'allowlist', allow: ['10.0.0.0/8'] },
      envdAccessToken: 'secret',
    });
    const listed = toListedSandbox(rec);
    assert.equal(listed.sandboxID, rec.id);
    assert.equal(listed.cpuCount, 1, '0.5 CPU counts as one');
    assert.equal(listed.endAt, rec.timeoutAt);
    assert.equal(listed.startedAt, rec.startedAt);
    assert.equal(listed.envdVersion, '0.6.13');
    const detail = toSandboxDetail(rec, 'localhost:7070');
    assert.equal(detail.envdAccessToken, 'secret');
    assert.equal(detail.domain, 'localhost:7070');
    assert.deepEqual(detail.network, { allowOut: ['10.0.0.0/8'], denyOut: ['0.0.0.0/0'], allowPublicTraffic: true });
    assert.equal(detail.allowInternetAccess, false);
    assert.deepEqual(detail.lifecycle, { onTimeout: 'pause', autoResume: false });
    assert.equal(toListedSandbox(record()).endAt, NO_END, 'no timeout: no end');
  });
});

describe('list parameters', () => {
  test('states come comma-separated or repeated; others are a 400', () => {
    assert.deepEqual(parseStates('running,paused'), new Set(['running', 'paused']));
    assert.deepEqual(parseStates(['paused']), new Set(['paused']));
    assert.equal(parseStates(undefined), undefined);
    assert.throws(() => parseStates('stopped'), is400(/stopped/));
  });

  test('page tokens round-trip; foreign tokens are a 400', () => {
    const position = { startedAt: '2026-01-01T00:00:01.000Z', id: newSandboxId() };
    assert.deepEqual(decodePageToken(encodePageToken(position)), position);
    assert.throws(() => decodePageToken('not-a-token'), is400(/nextToken/));
  });
});
