import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { DenError } from '@den/shared';
import { permissionString, toEntryInfo } from '../../../src/e2b/envd/entry.js';
import { httpStatusOf, toConnectError } from '../../../src/e2b/envd/errors.js';
import { FileType } from '../../../src/e2b/envd/gen/filesystem/filesystem_pb.js';
import { StartRequestSchema } from '../../../src/e2b/envd/gen/process/process_pb.js';
import { toEndEvent, toProcessSpec } from '../../../src/e2b/envd/process-service.js';
import { checkFileSignature, userFromAuthorization } from '../../../src/e2b/envd/sandbox-context.js';

describe('envd mapping', () => {
  test('exit information reads as Go prints a process state', () => {
    assert.deepEqual(toEndEvent({ exitCode: 0, signal: null, timedOut: false }).event, {
      case: 'end',
      value: { exitCode: 0, exited: true, status: 'exit status 0' },
    });
    assert.deepEqual(toEndEvent({ exitCode: 3, signal: null, timedOut: false }).event, {
      case: 'end',
      value: { exitCode: 3, exited: true, status: 'exit status 3', error: 'exit status 3' },
    });
    assert.deepEqual(toEndEvent({ exitCode: null, signal: 'SIGKILL', timedOut: false }).event, {
      case: 'end',
      value: { exitCode: -1, exited: false, status: 'signal: killed', error: 'signal: killed' },
    });
  });

  test('a Start request becomes a background ProcessSpec with the deadline as its timeout', () => {
    const req = create(StartRequestSchema, {
      process: { cmd: '/bin/bash', args: ['-l', '-c', 'echo hi'], envs: { A: '1' } },
      pty: { size: { cols: 80, rows: 24 } },
      tag: 't',
    });
    assert.deepEqual(toProcessSpec(req, { user: 'root' }, { cwd: '/tmp', timeoutMs: 5000 }), {
      cmd: ['/bin/bash', '-l', '-c', 'echo hi'],
      env: { A: '1' },
      background: true,
      cwd: '/tmp',
      user: 'root',
      tag: 't',
      timeoutMs: 5000,
      pty: { cols: 80, rows: 24 },
    });
    assert.throws(() => toProcessSpec(create(StartRequestSchema, {}), { user: undefined }, {}), /process.cmd/);
  });

  test('entries carry Go-style permissions and a timestamp', () => {
    const info = toEntryInfo({
      name: 'a',
      path: '/a',
      type: 'dir',
      size: 4096,
      mode: 0o755,
      owner: 'user',
      group: 'user',
      modifiedAt: '2024-01-02T03:04:05.678Z',
    });
    assert.equal(info.type, FileType.DIRECTORY);
    assert.equal(info.permissions, 'drwxr-xr-x');
    assert.equal(info.size, 4096n);
    assert.equal(Number(info.modifiedTime?.seconds), Date.parse('2024-01-02T03:04:05Z') / 1000);
    assert.equal(info.modifiedTime?.nanos, 678_000_000);
    assert.equal(permissionString('file', 0o640), '-rw-r-----');
    assert.equal(permissionString('symlink', 0o777), 'Lrwxrwxrwx');
  });

  test('den errors map to the Connect codes and HTTP statuses the SDK expects', () => {
    assert.equal(toConnectError(new DenError('FILE_NOT_FOUND', 'x')).code, Code.NotFound);
    assert.equal(toConnectError(new DenError('PROCESS_NOT_FOUND', 'x')).code, Code.NotFound);
    assert.equal(toConnectError(new DenError('FILE_EXISTS', 'x')).code, Code.AlreadyExists);
    assert.equal(toConnectError(new DenError('NOT_A_DIRECTORY', 'x')).code, Code.InvalidArgument);
    assert.equal(toConnectError(new DenError('SANDBOX_NOT_RUNNING', 'x')).code, Code.Unavailable);
    assert.equal(toConnectError(new Error('boom')).code, Code.Internal);
    assert.equal(httpStatusOf(new DenError('FILE_NOT_FOUND', 'x')).status, 404);
    assert.equal(httpStatusOf(new DenError('DISK_FULL', 'x')).status, 507);
    assert.equal(httpStatusOf(new DenError('SANDBOX_NOT_RUNNING', 'x')).status, 502);
  });

  test('the user comes from Basic authorization; file signatures are checked', () => {
    assert.equal(userFromAuthorization(`Basic ${Buffer.from('root:').toString('base64')}`), 'root');
    assert.equal(userFromAuthorization(undefined), undefined);
    assert.throws(() => userFromAuthorization('Bearer x'), /Basic/);
    const token = 'tok';
    const sign = (raw: string) => `v1_${createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')}`;
    const good = sign('/a.txt:read::tok');
    checkFileSignature(token, { path: '/a.txt', operation: 'read', user: undefined, signature: good });
    assert.throws(
      () => checkFileSignature(token, { path: '/a.txt', operation: 'write', user: undefined, signature: good }),
      (err: DenError) => err.code === 'UNAUTHORIZED',
    );
    const past = Math.floor(Date.now() / 1000) - 10;
    assert.throws(
      () =>
        checkFileSignature(token, {
          path: '/a.txt',
          operation: 'read',
          user: 'user',
          signature: sign(`/a.txt:read:user:tok:${past}`),
          expiration: String(past),
        }),
      /expired/,
    );
  });
});
