import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DenError, ErrorCodes, ErrorStatus, errnoToCode, isErrorCode } from '../src/errors.js';

test('every error code is documented and has a 4xx/5xx status', () => {
  for (const code of Object.keys(ErrorCodes)) {
    assert.ok(isErrorCode(code));
    assert.ok((ErrorCodes as Record<string, string>)[code]!.length > 10, `${code} needs a description`);
    const status = (ErrorStatus as Record<string, number>)[code];
    assert.ok(status !== undefined && status >= 400 && status < 600, `${code} needs a status`);
  }
  assert.deepEqual(Object.keys(ErrorStatus).sort(), Object.keys(ErrorCodes).sort());
});

test('errors round-trip through their JSON body', () => {
  const err = new DenError('SANDBOX_NOT_FOUND', 'no sandbox "x"', { ref: 'x' }, 'req-1');
  const back = DenError.fromBody(JSON.parse(JSON.stringify(err)));
  assert.equal(back.code, 'SANDBOX_NOT_FOUND');
  assert.equal(back.message, 'no sandbox "x"');
  assert.deepEqual(back.details, { ref: 'x' });
  assert.equal(back.requestId, 'req-1');
  assert.equal(back.status, 404);
  assert.equal(DenError.fromBody({ code: 'NOPE', message: 'm' }, 'fallback').code, 'INTERNAL');
  assert.equal(DenError.fromBody('garbage', 'fallback').message, 'fallback');
});

test('errno codes map to den codes', () => {
  assert.equal(errnoToCode('ENOENT'), 'FILE_NOT_FOUND');
  assert.equal(errnoToCode('ENOSPC'), 'DISK_FULL');
  assert.equal(errnoToCode('EACCES'), 'PERMISSION_DENIED');
  assert.equal(errnoToCode('EWHATEVER'), 'INTERNAL');
});
