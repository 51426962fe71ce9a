import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DenError } from '../src/errors.js';
import { isSandboxId, isSandboxName, newSandboxId, SANDBOX_ID_LENGTH } from '../src/ids.js';
import { checkSandboxPath } from '../src/sandbox-path.js';

test('sandbox ids are fixed-length [a-z0-9] and unique', () => {
  const ids = new Set(Array.from({ length: 2000 }, newSandboxId));
  assert.equal(ids.size, 2000);
  for (const id of ids) {
    assert.equal(id.length, SANDBOX_ID_LENGTH);
    assert.match(id, /^[a-z0-9]+$/);
    assert.ok(isSandboxId(id));
  }
});

test('names are DNS labels without path characters', () => {
  for (const ok of ['dev', 'my-box-2', 'a']) assert.ok(isSandboxName(ok), ok);
  for (const bad of ['', 'Dev', '../x', 'a/b', '-x', 'x-', 'a.b', 'a'.repeat(64), 'x\0'])
    assert.ok(!isSandboxName(bad), bad);
});

test('sandbox paths must be absolute, without .. or NUL', () => {
  assert.equal(checkSandboxPath('/home/user/a.txt'), '/home/user/a.txt');
  for (const bad of ['a.txt', '', '/home/../etc/passwd', '/x/..', 'x\0', '..']) {
    assert.throws(
      () => checkSandboxPath(bad),
      (e: unknown) => e instanceof DenError && e.code === 'INVALID_ARGUMENT' && e.status === 400,
      bad,
    );
  }
  assert.throws(() => checkSandboxPath('rel/x'), /absolute path inside the sandbox/);
});
