import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tokenCookie, tokensEqual, withoutTokenCookie, withoutTokenParam } from '../../src/proxy/token.js';

describe('preview token helpers', () => {
  it('strips only the token parameter and keeps the others byte for byte', () => {
    assert.equal(withoutTokenParam('/a?den_preview_token=s3&b=%20x&c'), '/a?b=%20x&c');
    assert.equal(withoutTokenParam('/a?den_preview_token=s3'), '/a');
    assert.equal(withoutTokenParam('/a?b=1'), '/a?b=1');
    assert.equal(withoutTokenParam('/a'), '/a');
  });

  it('removes the token cookie and keeps the app cookies', () => {
    assert.equal(withoutTokenCookie('a=1; den_preview_token=s3; b=2'), 'a=1; b=2');
    assert.equal(withoutTokenCookie('den_preview_token=s3'), undefined);
  });

  it('scopes the cookie to the host or to the path of the preview', () => {
    const host = tokenCookie({ form: 'host', ref: 'app', port: 8000, path: '/' }, 's/3', false);
    assert.equal(host, 'den_preview_token=s%2F3; Path=/; HttpOnly; SameSite=Lax');
    const path = tokenCookie({ form: 'path', ref: 'app', port: 8000, path: '/' }, 's3', true);
    assert.equal(path, 'den_preview_token=s3; Path=/proxy/app/8000/; HttpOnly; SameSite=Lax; Secure');
  });

  it('compares tokens of any length', () => {
    assert.equal(tokensEqual('abc', 'abc'), true);
    assert.equal(tokensEqual('abc', 'abcd'), false);
    assert.equal(tokensEqual('', 'abc'), false);
  });
});
