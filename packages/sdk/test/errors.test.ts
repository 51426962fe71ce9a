import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DenError, type ErrorCode, ErrorCodes, ErrorStatus } from '@den/shared';
import {
  ConnectionError,
  ERROR_CLASSES,
  ExecutableNotFoundError,
  errorFromBody,
  FileNotFoundError,
  InvalidArgumentError,
  SandboxNotFoundError,
  systemErrorCode,
  typed,
} from '../src/errors.js';
import * as sdk from '../src/index.js';

const codes = Object.keys(ErrorCodes) as ErrorCode[];

describe('error registry', () => {
  it('has an SDK class (or DenError) for every ErrorCode', () => {
    for (const code of codes) {
      const cls = ERROR_CLASSES[code];
      assert.ok(cls, `no SDK class for ${code}`);
      assert.ok(cls === DenError || cls.prototype instanceof DenError, `${code} maps to a class outside DenError`);
    }
    assert.deepEqual(Object.keys(ERROR_CLASSES).sort(), [...codes].sort(), 'registry lists exactly the shared codes');
  });

  it('rebuilds every code from a JSON body as its class, keeping code, message, details and requestId', () => {
    for (const code of codes) {
      const err = errorFromBody({ code, message: `m-${code}`, details: { k: 1 }, requestId: 'req-1' });
      assert.ok(err instanceof ERROR_CLASSES[code], `${code} is not an instance of its class`);
      assert.ok(err instanceof DenError);
      assert.ok(err instanceof Error);
      assert.equal(err.code, code);
      assert.equal(err.message, `m-${code}`);
      assert.deepEqual(err.details, { k: 1 });
      assert.equal(err.requestId, 'req-1');
      assert.equal(err.status, ErrorStatus[code]);
    }
  });

  it('gives each subclass its own name and exports it from the package', () => {
    const exported = sdk as unknown as Record<string, unknown>;
    for (const code of codes) {
      const cls = ERROR_CLASSES[code];
      if (cls === DenError) continue;
      const err = errorFromBody({ code, message: 'x' });
      assert.equal(err.name, cls.name);
      assert.equal(exported[cls.name], cls, `${cls.name} is not exported from @den/sdk`);
    }
    assert.equal(exported.DenError, DenError);
  });

  it('makes instanceof work for commonly caught codes', () => {
    const err = errorFromBody({ code: 'SANDBOX_NOT_FOUND', message: 'no sandbox "dev"' });
    assert.ok(err instanceof SandboxNotFoundError);
    assert.ok(!(err instanceof FileNotFoundError));
    assert.ok(errorFromBody({ code: 'EXECUTABLE_NOT_FOUND', message: 'x' }) instanceof ExecutableNotFoundError);
  });

  it('turns unknown codes and malformed bodies into INTERNAL with the fallback message', () => {
    const unknown = errorFromBody({ code: 'NOT_A_CODE', message: 'x' }, 'HTTP 502 from GET /v1/health');
    assert.equal(unknown.constructor, DenError);
    assert.equal(unknown.code, 'INTERNAL');
    assert.equal(unknown.message, 'HTTP 502 from GET /v1/health');
    assert.equal(errorFromBody('<html>', 'fallback').code, 'INTERNAL');
    assert.equal(errorFromBody(undefined).code, 'INTERNAL');
  });

  it('types a plain DenError thrown locally', () => {
    const err = typed(new DenError('INVALID_ARGUMENT', 'bad path'));
    assert.ok(err instanceof InvalidArgumentError);
    assert.equal(err.message, 'bad path');
    const same = new InvalidArgumentError('x');
    assert.equal(typed(same), same);
  });
});

describe('ConnectionError', () => {
  it('finds the errno in nested causes (undici wraps it in "fetch failed")', () => {
    const inner = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:7070'), { code: 'ECONNREFUSED' });
    const outer = new TypeError('fetch failed', { cause: inner });
    assert.equal(systemErrorCode(outer), 'ECONNREFUSED');
    const aggregate = new TypeError('fetch failed', { cause: new AggregateError([inner]) });
    assert.equal(systemErrorCode(aggregate), 'ECONNREFUSED');
    const err = new ConnectionError('http://127.0.0.1:7070', outer);
    assert.equal(err.errno, 'ECONNREFUSED');
    assert.equal(err.url, 'http://127.0.0.1:7070');
    assert.match(err.message, /cannot reach the den daemon at http:\/\/127\.0\.0\.1:7070 \(ECONNREFUSED\)/);
    assert.ok(!(err instanceof DenError), 'no daemon produced it, so it has no error code');
  });
});
