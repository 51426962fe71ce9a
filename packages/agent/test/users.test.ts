import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildEnv, planLaunch } from '../src/launch.js';
import { UserDirectory } from '../src/users.js';

describe('agent: users and launch planning (no processes)', () => {
  let dir: string;
  let files: { passwd: string; group: string };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'den-agent-users-'));
    files = { passwd: join(dir, 'passwd'), group: join(dir, 'group') };
    await writeFile(
      files.passwd,
      'root:x:0:0:root:/root:/bin/bash\n# comment\nuser:x:1000:1000::/home/user:/bin/bash\nbroken line\n',
    );
    await writeFile(files.group, 'root:x:0:\nuser:x:1000:\nstaff:x:50:user\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves names, uids and the default user', () => {
    const users = new UserDirectory('user', files);
    assert.deepEqual(users.resolve(undefined), {
      name: 'user',
      uid: 1000,
      gid: 1000,
      home: '/home/user',
      shell: '/bin/bash',
    });
    assert.equal(users.resolve('root').uid, 0);
    assert.equal(users.resolve('1000').name, 'user');
    assert.deepEqual(users.resolve('4242'), { name: '4242', uid: 4242, gid: 4242, home: '/', shell: '/bin/sh' });
    assert.throws(() => users.resolve('bob'), {
      code: 'INVALID_ARGUMENT',
      message: /unknown user 'bob' in this sandbox/,
    });
    assert.equal(users.userName(1000), 'user');
    assert.equal(users.userName(7), '7');
    assert.equal(users.groupName(50), 'staff');
    assert.equal(users.groupName(51), '51');
  });

  it('falls back to root when the default user does not exist, or /etc/passwd is missing', () => {
    assert.equal(new UserDirectory('nobody-here', files).resolve(undefined).name, 'root');
    const bare = new UserDirectory('user', { passwd: join(dir, 'none'), group: join(dir, 'none') });
    assert.deepEqual(bare.resolve(undefined), { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh' });
    assert.equal(bare.resolve('root').uid, 0);
  });

  it('sees users added after the first lookup', async () => {
    const users = new UserDirectory('user', files);
    assert.throws(() => users.resolve('late'));
    await writeFile(files.passwd, `${'root:x:0:0:root:/root:/bin/bash\n'}late:x:2000:2000::/home/late:/bin/sh\n`);
    assert.equal(users.resolve('late').uid, 2000);
  });

  it('layers the environment: defaults < sandbox < request', () => {
    const user = { name: 'u', uid: 1, gid: 1, home: '/h', shell: '/bin/zsh' };
    const env = buildEnv(user, { A: 'sandbox', B: 'sandbox', PATH: '/custom' }, { B: 'request' }, true);
    assert.deepEqual(env, {
      PATH: '/custom',
      HOME: '/h',
      USER: 'u',
      LOGNAME: 'u',
      SHELL: '/bin/zsh',
      LANG: 'C.UTF-8',
      TERM: 'xterm-256color',
      A: 'sandbox',
      B: 'request',
    });
  });

  it('validates the spec, naming the field', () => {
    const ctx = { users: new UserDirectory('root', files), sandboxEnv: {} };
    const bad: Array<[unknown, RegExp]> = [
      [null, /JSON object/],
      [{ cmd: 'ls' }, /cmd must be a non-empty array/],
      [{ cmd: ['ls', 3] }, /cmd\[1\]/],
      [{ cmd: ['ls'], env: { 'A=B': 'x' } }, /env name/],
      [{ cmd: ['ls'], timeoutMs: 'soon' }, /timeoutMs/],
      [{ cmd: ['ls'], pty: { cols: 80 } }, /pty must be \{cols, rows\}/],
      [{ cmd: ['ls'], cwd: 7 }, /cwd must be a string/],
    ];
    for (const [spec, message] of bad)
      assert.throws(() => planLaunch(spec, ctx), { code: 'INVALID_ARGUMENT', message });
    // Relative cwds are taken from the user's home (root's, on this host).
    const hostRoot = { ...ctx, users: new UserDirectory('root') };
    const plan = planLaunch({ cmd: ['sh', '-c', 'true'], cwd: '.' }, hostRoot);
    assert.equal(plan.cwd, '/root');
    assert.equal(plan.argv[0], 'sh');
    assert.match(plan.file, /^\/.*\/sh$/);
    assert.throws(() => planLaunch({ cmd: ['true'], cwd: 'no-such-subdir' }, hostRoot), {
      code: 'FILE_NOT_FOUND',
      message: /\/root\/no-such-subdir/,
    });
  });
});
