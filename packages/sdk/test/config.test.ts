import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_URL, normalizeUrl, resolveConfig, toWebSocketUrl } from '../src/config.js';
import { InvalidArgumentError } from '../src/errors.js';

describe('resolveConfig', () => {
  const env = { DEN_URL: 'http://env:1' };

  it('prefers per-call options, then client options, then DEN_URL, then the default', () => {
    assert.equal(resolveConfig({ url: 'http://call:1' }, { url: 'http://client:1' }, env).url, 'http://call:1');
    assert.equal(resolveConfig({}, { url: 'http://client:1' }, env).url, 'http://client:1');
    assert.equal(resolveConfig({}, {}, env).url, 'http://env:1');
    assert.equal(resolveConfig({}, {}, {}).url, DEFAULT_URL);
    assert.equal(DEFAULT_URL, 'http://127.0.0.1:7070');
  });

  it('treats an undefined per-call field as not given', () => {
    assert.equal(resolveConfig({ url: undefined }, { url: 'http://client:1' }, env).url, 'http://client:1');
  });

  it('ignores an empty DEN_URL', () => {
    assert.equal(resolveConfig({}, {}, { DEN_URL: '  ' }).url, DEFAULT_URL);
  });

  it('resolves requestTimeoutMs in the same order, 0 meaning no limit', () => {
    assert.equal(resolveConfig({}, {}, {}).requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
    assert.equal(resolveConfig({}, { requestTimeoutMs: 5 }, {}).requestTimeoutMs, 5);
    assert.equal(resolveConfig({ requestTimeoutMs: 0 }, { requestTimeoutMs: 5 }, {}).requestTimeoutMs, 0);
    assert.throws(() => resolveConfig({ requestTimeoutMs: -1 }, {}, {}), InvalidArgumentError);
  });

  it('strips trailing slashes and rejects what is not an http(s) URL', () => {
    assert.equal(resolveConfig({ url: 'http://den:7070///' }, {}, {}).url, 'http://den:7070');
    assert.equal(normalizeUrl('https://den.example/api/'), 'https://den.example/api');
    assert.throws(() => normalizeUrl('127.0.0.1:7070'), InvalidArgumentError);
    assert.throws(() => normalizeUrl('ftp://den'), /must start with http/);
  });

  it('derives WebSocket URLs', () => {
    assert.equal(toWebSocketUrl('http://127.0.0.1:7070'), 'ws://127.0.0.1:7070');
    assert.equal(toWebSocketUrl('https://den.example'), 'wss://den.example');
  });
});
