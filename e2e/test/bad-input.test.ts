import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ExecutableNotFoundError, InvalidArgumentError, Sandbox } from '@den/sdk';
import { CreateSandboxRequest } from '@den/shared';
import { api, destroyDaemon, startDaemon, type TestDaemon } from '../src/harness.js';
import { leftovers } from '../src/leaks.js';

/** Bad requests get a 4xx that says what to fix, and leave nothing behind. */
describe('bad input', () => {
  let daemon: TestDaemon;
  let sbx: Sandbox;
  before(async () => {
    daemon = await startDaemon();
    sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', diskMB: 2048 });
  });
  after(async () => destroyDaemon(daemon));

  const cases: [string, unknown, number, string, RegExp][] = [
    ['unknown image', { image: 'nope' }, 404, 'IMAGE_NOT_FOUND', /nope.*base/],
    ['unknown runtime', { runtime: 'kata' }, 400, 'INVALID_ARGUMENT', /runtime/],
    ['negative memory', { memoryMB: -5 }, 400, 'INVALID_ARGUMENT', /memoryMB must be >= 64/],
    ['absurd memory', { memoryMB: 10_000_000 }, 400, 'INVALID_ARGUMENT', /memoryMB must be <= 65536/],
    ['more cpus than the machine', { cpus: 64 }, 400, 'INVALID_ARGUMENT', /cpus 64 is more than this machine/],
    ['zero disk', { diskMB: 0 }, 400, 'INVALID_ARGUMENT', /diskMB/],
    ['name with a slash', { name: '../etc' }, 400, 'INVALID_ARGUMENT', /name is not valid: use 1-63 characters/],
    ['name with a path', { name: 'a/b' }, 400, 'INVALID_ARGUMENT', /name is not valid/],
    ['unknown field', { memroyMB: 5 }, 400, 'INVALID_ARGUMENT', /unknown field "memroyMB"/],
    ['env with a bad key', { env: { 'A-B': 'x' } }, 400, 'INVALID_ARGUMENT', /env/],
  ];
  for (const [what, body, status, code, message] of cases) {
    test(`create with ${what} -> ${status} ${code}`, async () => {
      const res = await api(daemon, 'POST', '/v1/sandboxes', body);
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.code, code);
      assert.match(String(res.body.message), message);
      assert.ok(res.body.requestId);
    });
  }

  test('the OpenAPI document describes the routes with the shared schemas', async () => {
    const doc = (await (await fetch(`${daemon.url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    };
    assert.match(doc.openapi, /^3\./);
    for (const path of [
      '/v1/sandboxes',
      '/v1/sandboxes/{ref}',
      '/v1/sandboxes/{ref}/exec',
      '/v1/sandboxes/{ref}/files',
    ]) {
      assert.ok(doc.paths[path], `${path} is documented`);
    }
    const create = doc.paths['/v1/sandboxes']!.post!.requestBody!.content['application/json']!.schema as {
      properties: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(create.properties).sort(), Object.keys(CreateSandboxRequest.properties).sort());
  });

  test('a body that is not JSON is refused', async () => {
    const res = await fetch(`${daemon.url}/v1/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{nope',
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { code: string }).code, 'INVALID_ARGUMENT');
  });

  test('unknown sandboxes and routes are 404 with a hint', async () => {
    const res = await api(daemon, 'GET', '/v1/sandboxes/ghost');
    assert.equal(res.status, 404);
    assert.equal(res.body.code, 'SANDBOX_NOT_FOUND');
    assert.match(String(res.body.message), /den ls/);
    assert.equal((await api(daemon, 'POST', '/v1/sandboxes/ghost/stop')).status, 404);
    assert.equal((await api(daemon, 'GET', '/v1/nothing')).body.code, 'ROUTE_NOT_FOUND');
  });

  test('a duplicate name is 409 and creates nothing', async () => {
    await api(daemon, 'POST', '/v1/sandboxes', { name: 'twin', runtime: 'runc' });
    const before = (await Sandbox.list({ url: daemon.url })).length;
    const res = await api(daemon, 'POST', '/v1/sandboxes', { name: 'twin', runtime: 'runc' });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'NAME_TAKEN');
    assert.equal((await Sandbox.list({ url: daemon.url })).length, before);
    await api(daemon, 'DELETE', '/v1/sandboxes/twin');
  });

  test('exec of a missing binary is EXECUTABLE_NOT_FOUND', async () => {
    await assert.rejects(sbx.commands.run(['no-such-binary-x']), (err: unknown) => {
      assert.ok(err instanceof ExecutableNotFoundError);
      assert.match((err as Error).message, /no-such-binary-x/);
      return true;
    });
    const viaShell = await sbx.commands.run('no-such-binary-x');
    assert.equal(viaShell.exitCode, 127);
  });

  test('a command that outlives its timeout is killed with its children', async () => {
    const r = await sbx.commands.run('sleep 300 & sleep 300; echo never', { timeoutMs: 500 });
    assert.equal(r.timedOut, true);
    assert.equal(r.stdout, '');
    const ps = await sbx.commands.run(['sh', '-c', 'ps -eo args | grep -c "^sleep 300" || true']);
    assert.equal(ps.stdout.trim(), '0', 'no sleep survives the timeout');
  });

  test('exec with a bad user or cwd says what is wrong', async () => {
    await assert.rejects(sbx.commands.run('true', { user: 'bob' }), /unknown user 'bob'/);
    await assert.rejects(sbx.commands.run('true', { cwd: '/does/not/exist' }), /\/does\/not\/exist/);
  });

  test('files API refuses relative paths and ..', async () => {
    for (const path of ['etc/passwd', '/home/user/../../etc/passwd', '../x']) {
      await assert.rejects(sbx.files.read(path), InvalidArgumentError, path);
      await assert.rejects(sbx.files.write(path, 'x'), InvalidArgumentError, path);
    }
    const res = await api(daemon, 'GET', `/v1/sandboxes/${sbx.id}/files/list?path=relative`);
    assert.equal(res.status, 400);
  });

  test('a symlink pointing outside stays inside the sandbox', async () => {
    await sbx.commands.run('ln -sf /../../../../../../etc/hostname /home/user/escape');
    const viaLink = await sbx.files.read('/home/user/escape');
    const inside = (await sbx.commands.run('cat /etc/hostname')).stdout;
    assert.equal(viaLink, inside, 'the link resolves in the sandbox root, not on the host');
    await sbx.files.write('/home/user/escape2', 'x');
    await sbx.commands.run('ln -sf /../../../../tmp /home/user/tmplink');
    await sbx.files.write('/home/user/tmplink/through-link.txt', 'inside');
    assert.equal((await sbx.commands.run('cat /tmp/through-link.txt')).stdout, 'inside');
  });

  test('a 1 GiB upload streams through without the daemon buffering it', async () => {
    const size = 1024 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const hash = createHash('sha256');
    async function* body() {
      for (let sent = 0; sent < size; sent += chunk.length) {
        hash.update(chunk);
        yield chunk;
      }
    }
    await sbx.files.write('/home/user/big.bin', Readable.from(body()));
    const expected = hash.digest('hex');
    const r = await sbx.commands.run('sha256sum /home/user/big.bin | cut -d" " -f1; stat -c %s /home/user/big.bin');
    assert.equal(r.stdout, `${expected}\n${size}\n`);
    const status = await (await import('node:fs/promises')).readFile(`/proc/${daemon.proc.pid}/status`, 'utf8');
    const hwmKB = Number(/VmHWM:\s+(\d+)/.exec(status)![1]);
    assert.ok(hwmKB < 400 * 1024, `daemon peak RSS ${hwmKB} kB stays far below the upload size`);
    await sbx.files.remove('/home/user/big.bin');
  });

  test('deleting everything leaves nothing', async () => {
    await sbx.kill();
    assert.deepEqual(leftovers(daemon.home), []);
  });
});
