import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { DenClient } from '../src/client.js';
import { ConnectionError, InvalidArgumentError } from '../src/errors.js';
import { Sandbox } from '../src/sandbox.js';

/** A loopback port nobody listens on: bind one, then release it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address && typeof address === 'object');
  return address.port;
}

describe('DenClient without a daemon', () => {
  it('reports a refused connection as ConnectionError naming the URL', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    await assert.rejects(new DenClient({ url }).health(), (err: unknown) => {
      assert.ok(err instanceof ConnectionError);
      assert.equal(err.url, url);
      assert.equal(err.errno, 'ECONNREFUSED');
      return true;
    });
    await assert.rejects(Sandbox.list({ url }), ConnectionError);
    await assert.rejects(new DenClient({ url }).execWebSocket('dev'), ConnectionError);
  });

  it('rejects a malformed URL when the client is made', () => {
    assert.throws(() => new DenClient({ url: 'localhost:7070' }), InvalidArgumentError);
  });

  it('rejects an empty sandbox reference and a bad pid before sending', async () => {
    const client = new DenClient({ url: 'http://127.0.0.1:9' });
    await assert.rejects(client.getSandbox(''), InvalidArgumentError);
    await assert.rejects(client.signalProcess('dev', 0, 'SIGKILL'), InvalidArgumentError);
  });

  it('rejects bad PTY sizes and relative file paths before sending', async () => {
    const info = {
      id: 'aaaaaaaaaaaaaaaaaaaa',
      name: null,
      preview: { public: false, token: 't', domain: 'localhost:9' },
    };
    const sbx = new Sandbox(info, new DenClient({ url: 'http://127.0.0.1:9' }));
    assert.equal(sbx.getHost(8000), '8000-aaaaaaaaaaaaaaaaaaaa.localhost:9');
    await assert.rejects(sbx.pty.create({ cols: 0, rows: 24, onData: () => {} }), InvalidArgumentError);
    await assert.rejects(sbx.files.read('etc/passwd'), /relative/);
    await assert.rejects(sbx.files.write('/a/../b', 'x'), InvalidArgumentError);
  });
});
