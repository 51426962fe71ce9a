import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { baseName, joinPath, parseCpArgs, parseCpLocation } from '../src/cp-path.js';
import { UsageError } from '../src/errors.js';

describe('den cp paths', () => {
  it('recognises REF:/abs/path as a sandbox path', () => {
    assert.deepEqual(parseCpLocation('dev:/home/user/a.txt'), { kind: 'remote', ref: 'dev', path: '/home/user/a.txt' });
    assert.deepEqual(parseCpLocation('abcdefghij0123456789:/'), {
      kind: 'remote',
      ref: 'abcdefghij0123456789',
      path: '/',
    });
    assert.deepEqual(parseCpLocation('my-box-2:/tmp/'), { kind: 'remote', ref: 'my-box-2', path: '/tmp/' });
  });

  it('keeps local paths local, colons included', () => {
    for (const local of ['./a:b', '/tmp/x:y', 'file.txt', '-', 'Dev:/x', '../up', 'dir/']) {
      assert.deepEqual(parseCpLocation(local), { kind: 'local', path: local }, local);
    }
  });

  it('asks for an absolute path inside the sandbox', () => {
    assert.throws(() => parseCpLocation('dev:tmp/a'), /give an absolute path, e\.g\. dev:\/home\/user\/tmp\/a/);
    assert.throws(() => parseCpLocation('dev:'), UsageError);
  });

  it('makes an upload or a download plan, one side remote', () => {
    assert.deepEqual(parseCpArgs('a.txt', 'dev:/tmp/'), {
      direction: 'upload',
      local: 'a.txt',
      ref: 'dev',
      remote: '/tmp/',
    });
    assert.deepEqual(parseCpArgs('dev:/etc/os-release', '.'), {
      direction: 'download',
      ref: 'dev',
      remote: '/etc/os-release',
      local: '.',
    });
    assert.throws(() => parseCpArgs('a', 'b'), /neither path is in a sandbox/);
    assert.throws(() => parseCpArgs('a:/x', 'b:/y'), /both paths are in sandboxes/);
  });

  it('joins directory targets with the basename', () => {
    assert.equal(baseName('/a/b/c.txt'), 'c.txt');
    assert.equal(baseName('/a/b/'), 'b');
    assert.equal(baseName('c.txt'), 'c.txt');
    assert.equal(baseName('/'), '');
    assert.equal(joinPath('/tmp/', 'a'), '/tmp/a');
    assert.equal(joinPath('/tmp', 'a'), '/tmp/a');
    assert.equal(joinPath('/', 'a'), '/a');
  });
});
