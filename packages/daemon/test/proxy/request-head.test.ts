import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_HEAD_BYTES, parseRequestHead } from '../../src/proxy/request-head.js';

const head = (text: string) => parseRequestHead(Buffer.from(text, 'latin1'));

describe('parseRequestHead', () => {
  it('reads method, target, fields in order and the head length', () => {
    const text =
      'POST /a?b=1 HTTP/1.1\r\nHost: 80-x.localhost\r\nCookie: a=1\r\ncookie: b=2\r\nX-A: 1\r\nx-a:  2 \r\n\r\nBODY';
    const parsed = head(text);
    assert.ok(typeof parsed === 'object');
    assert.equal(parsed.method, 'POST');
    assert.equal(parsed.url, '/a?b=1');
    assert.deepEqual(parsed.rawHeaders, [
      'Host',
      '80-x.localhost',
      'Cookie',
      'a=1',
      'cookie',
      'b=2',
      'X-A',
      '1',
      'x-a',
      '2',
    ]);
    assert.equal(parsed.headers.cookie, 'a=1; b=2');
    assert.equal(parsed.headers['x-a'], '1, 2');
    assert.equal(parsed.length, text.length - 'BODY'.length);
  });

  it('waits for the end of the head', () => {
    assert.equal(head('GET / HTTP/1.1\r\nHost: x\r\n'), 'incomplete');
    assert.equal(head(''), 'incomplete');
  });

  it("leaves everything unusual to Node's parser", () => {
    for (const text of [
      'GET / HTTP/1.0\r\nHost: x\r\n\r\n',
      'GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n',
      'CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n',
      'GET / HTTP/1.1\r\nBad Name: x\r\n\r\n',
      'GET / HTTP/1.1\r\nX: a\0b\r\n\r\n',
      'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n',
      'get / HTTP/1.1\r\nHost: x\r\n\r\n',
    ]) {
      assert.equal(head(text), 'unsupported', JSON.stringify(text));
    }
    assert.equal(head(`GET / HTTP/1.1\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}`), 'unsupported');
    assert.equal(head(`GET / HTTP/1.1\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`), 'unsupported');
  });
});
