import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { describe, it } from 'node:test';
import { ConnectionError, errorFromBody, RequestTimeoutError } from '@den/sdk';
import { CliError, describeError, EXIT_TIMEOUT, EXIT_USAGE, exitCodeFor, UsageError } from '../src/errors.js';

describe('exit codes', () => {
  it('mirrors the process: its code, 128 + signal, 124 on timeout', () => {
    assert.equal(exitCodeFor({ exitCode: 0, signal: null, timedOut: false }), 0);
    assert.equal(exitCodeFor({ exitCode: 42, signal: null, timedOut: false }), 42);
    assert.equal(exitCodeFor({ exitCode: null, signal: 'SIGKILL', timedOut: false }), 128 + constants.signals.SIGKILL);
    assert.equal(exitCodeFor({ exitCode: null, signal: 'SIGTERM', timedOut: false }), 143);
    assert.equal(exitCodeFor({ exitCode: null, signal: 'SIGINT', timedOut: false }), 130);
    assert.equal(exitCodeFor({ exitCode: null, signal: 'SIGKILL', timedOut: true }), EXIT_TIMEOUT);
    assert.equal(EXIT_TIMEOUT, 124);
    assert.equal(exitCodeFor({ exitCode: null, signal: null, timedOut: false }), 1);
  });
});

describe('error lines', () => {
  const url = 'http://127.0.0.1:7070';

  it('tells how to start an unreachable daemon', () => {
    const err = new ConnectionError(url, Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }));
    assert.deepEqual(describeError(err, url), {
      message: 'cannot reach the den daemon at http://127.0.0.1:7070: start it with `den up`',
      exitCode: 1,
    });
  });

  it("keeps the daemon's message for daemon errors", () => {
    const err = errorFromBody({ code: 'SANDBOX_NOT_FOUND', message: 'no sandbox "dev": list them with `den ls`' });
    assert.deepEqual(describeError(err, url), { message: 'no sandbox "dev": list them with `den ls`', exitCode: 1 });
    const internal = errorFromBody({ code: 'INTERNAL', message: 'boom', requestId: 'req-7' });
    assert.equal(describeError(internal, url).message, 'boom (request req-7)');
  });

  it('gives usage errors exit 2 and keeps messages on one line', () => {
    assert.deepEqual(describeError(new UsageError('bad flag'), url), { message: 'bad flag', exitCode: EXIT_USAGE });
    assert.equal(describeError(new CliError('nope', 3), url).exitCode, 3);
    assert.equal(describeError(new Error('a\n  b\n'), url).message, 'a; b');
    assert.equal(describeError(new RequestTimeoutError(url, 5), url).exitCode, 1);
  });
});
