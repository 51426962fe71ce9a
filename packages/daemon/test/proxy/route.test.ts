import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePreviewRoute } from '../../src/proxy/route.js';

const parse = (host: string | undefined, url: string, domain = 'localhost') =>
  parsePreviewRoute({ url, headers: host === undefined ? {} : { host } }, domain);

describe('parsePreviewRoute', () => {
  it('reads the host form with an id, a hyphenated name and the daemon port', () => {
    assert.deepEqual(parse('8000-abcdefghij0123456789.localhost', '/a?b=1'), {
      form: 'host',
      ref: 'abcdefghij0123456789',
      port: 8000,
      path: '/a?b=1',
    });
    assert.deepEqual(parse('3000-my-app-2.localhost:7070', '/'), {
      form: 'host',
      ref: 'my-app-2',
      port: 3000,
      path: '/',
    });
    assert.deepEqual(parse('80-web.Preview.Example.COM:443', '/x', 'preview.example.com'), {
      form: 'host',
      ref: 'web',
      port: 80,
      path: '/x',
    });
  });

  it('rejects hosts that are not previews', () => {
    assert.equal(parse('localhost:7070', '/v1/health'), undefined);
    assert.equal(parse('8000-app.other.test', '/'), undefined);
    assert.equal(parse('8000-a.b.localhost', '/'), undefined, 'ref must be one label');
    assert.equal(parse('app-8000.localhost', '/'), undefined);
    assert.equal(parse('0-app.localhost', '/'), undefined);
    assert.equal(parse('65536-app.localhost', '/'), undefined);
    assert.equal(parse('8000-app-.localhost', '/'), undefined, 'names do not end with a hyphen');
    assert.deepEqual(parse('65535-app.localhost', '/')?.port, 65535);
  });

  it('reads the path form on any host; no slash after the port leaves a path to redirect', () => {
    assert.deepEqual(parse('127.0.0.1:7070', '/proxy/my-app/8000/static/x.js?v=2'), {
      form: 'path',
      ref: 'my-app',
      port: 8000,
      path: '/static/x.js?v=2',
    });
    assert.deepEqual(parse(undefined, '/proxy/my-app/8000'), { form: 'path', ref: 'my-app', port: 8000, path: '' });
    assert.deepEqual(parse('localhost', '/proxy/dev/8000?x=1'), { form: 'path', ref: 'dev', port: 8000, path: '?x=1' });
    assert.equal(parse('localhost', '/proxy/dev/80000/'), undefined);
    assert.equal(parse('localhost', '/proxy/dev/0/'), undefined);
    assert.equal(parse('localhost', '/proxy/dev/8000abc'), undefined);
    assert.equal(parse('localhost', '/proxy/Dev/8000/'), undefined);
    assert.equal(parse('localhost', '/v1/sandboxes'), undefined);
  });

  it('prefers the host form, so apps may serve their own /proxy/ paths', () => {
    assert.deepEqual(parse('5173-vite.localhost', '/proxy/other/1/'), {
      form: 'host',
      ref: 'vite',
      port: 5173,
      path: '/proxy/other/1/',
    });
  });
});
