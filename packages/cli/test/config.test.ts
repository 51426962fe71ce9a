import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_HOME, DEFAULT_LISTEN, parseListen, resolveCliConfig, urlForListen } from '../src/config.js';
import { UsageError } from '../src/errors.js';

describe('CLI configuration', () => {
  it('defaults to the daemon defaults', () => {
    assert.deepEqual(resolveCliConfig({}, {}), {
      url: 'http://127.0.0.1:7070',
      home: DEFAULT_HOME,
      listen: DEFAULT_LISTEN,
      listenUrl: 'http://127.0.0.1:7070',
    });
    assert.equal(DEFAULT_HOME, '/var/lib/den');
  });

  it('orders --url, --listen, DEN_URL, DEN_LISTEN', () => {
    const env = { DEN_URL: 'http://env-url:1', DEN_LISTEN: '127.0.0.2:7071' };
    assert.equal(resolveCliConfig({ url: 'http://flag:1', listen: '127.0.0.3:1' }, env).url, 'http://flag:1');
    assert.equal(resolveCliConfig({ listen: '127.0.0.3:1' }, env).url, 'http://127.0.0.3:1');
    assert.equal(resolveCliConfig({}, env).url, 'http://env-url:1');
    assert.equal(resolveCliConfig({}, { DEN_LISTEN: '127.0.0.2:7071' }).url, 'http://127.0.0.2:7071');
    // `den up` always manages the daemon on the listen address, whatever DEN_URL says.
    assert.equal(resolveCliConfig({}, env).listenUrl, 'http://127.0.0.2:7071');
  });

  it('takes --home over DEN_HOME', () => {
    assert.equal(resolveCliConfig({ home: '/flag' }, { DEN_HOME: '/env' }).home, '/flag');
    assert.equal(resolveCliConfig({}, { DEN_HOME: '/env' }).home, '/env');
  });

  it('derives a client URL from a listen address', () => {
    assert.equal(urlForListen('127.0.0.1:7070'), 'http://127.0.0.1:7070');
    assert.equal(urlForListen('0.0.0.0:8080'), 'http://127.0.0.1:8080');
    assert.equal(urlForListen(':9000'), 'http://127.0.0.1:9000');
    assert.equal(urlForListen('[::]:7070'), 'http://[::1]:7070');
    assert.equal(urlForListen('[::1]:7070'), 'http://[::1]:7070');
    assert.equal(urlForListen('den.local:7070'), 'http://den.local:7070');
  });

  it('rejects listen addresses without a valid port', () => {
    for (const bad of ['localhost', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:70000', '::1:7070']) {
      assert.throws(() => parseListen(bad), UsageError, bad);
    }
  });
});
