import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spawn as spawnPty } from 'node-pty';
import {
  DEN_BIN,
  destroyDaemon,
  freePort,
  startDaemon,
  type TestDaemon,
  testNetworkEnv,
  waitFor,
} from '../src/harness.js';

/** The `den` command as a user types it, against a real daemon. */
describe('den CLI', () => {
  let daemon: TestDaemon;
  let work: string;
  const den = (args: string[], input?: string) => {
    const r = spawnSync(DEN_BIN, args, {
      encoding: 'utf8',
      env: { ...process.env, DEN_URL: daemon.url },
      input,
      timeout: 120_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  before(async () => {
    daemon = await startDaemon();
    work = mkdtempSync(join(tmpdir(), 'den-cli-'));
  });
  after(async () => {
    rmSync(work, { recursive: true, force: true });
    await destroyDaemon(daemon);
  });

  test('create prints the id; ls, info and status show it', () => {
    const c = den([
      'create',
      '--name',
      'dev',
      '--runtime',
      'runc',
      '--cpus',
      '1',
      '--memory',
      '512',
      '--disk',
      '1024',
      '-e',
      'FOO=bar',
    ]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout.trim(), /^[a-z0-9]{20}$/);
    const ls = den(['ls']);
    assert.match(ls.stdout, /dev\s+running\s+runc/);
    const json = JSON.parse(den(['ls', '--json']).stdout) as { id: string }[];
    assert.ok(json.some((s) => s.id === c.stdout.trim()));
    const info = JSON.parse(den(['info', 'dev', '--json']).stdout) as { env: Record<string, string>; memoryMB: number };
    assert.deepEqual(info.env, { FOO: 'bar' });
    assert.equal(info.memoryMB, 512);
    const status = den(['status']);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /runsc/);
  });

  test('exec streams output and exits with the command code', () => {
    const r = den(['exec', 'dev', '--', 'python3', '-c', 'print(6*7)']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '42\n');
    const opts = den([
      'exec',
      'dev',
      '-u',
      'root',
      '-w',
      '/tmp',
      '-e',
      'A=1',
      '--',
      'sh',
      '-c',
      'id -u; pwd; echo $A $FOO; exit 5',
    ]);
    assert.equal(opts.code, 5);
    assert.equal(opts.stdout, '0\n/tmp\n1 bar\n');
    const timeout = den(['exec', 'dev', '--timeout', '1', '--', 'sleep', '30']);
    assert.equal(timeout.code, 124);
    const stdin = den(['exec', '-i', 'dev', '--', 'tr', 'a-z', 'A-Z'], 'hello\n');
    assert.equal(stdin.stdout, 'HELLO\n');
  });

  test('cp copies both ways, into directories', () => {
    const local = join(work, 'local.txt');
    writeFileSync(local, 'from host\n');
    assert.equal(den(['cp', local, 'dev:/home/user/']).code, 0);
    assert.equal(den(['exec', 'dev', '--', 'cat', '/home/user/local.txt']).stdout, 'from host\n');
    const back = den(['cp', 'dev:/etc/os-release', `${work}/`]);
    assert.equal(back.code, 0, back.stderr);
    assert.match(readFileSync(join(work, 'os-release'), 'utf8'), /bookworm/);
  });

  test('run gives an interactive shell with a real terminal', async () => {
    const term = spawnPty(DEN_BIN, ['run', 'dev'], {
      cols: 90,
      rows: 20,
      env: { ...process.env, DEN_URL: daemon.url } as Record<string, string>,
    });
    let out = '';
    term.onData((d) => (out += d));
    const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
    await waitFor(() => out.includes('$'), 'a prompt', 20_000);
    term.write('tty; stty size; whoami\r');
    await waitFor(() => /20 90/.test(out) && out.includes('user'), 'tty output', 20_000);
    assert.match(out, /\/dev\/pts\/\d+/);
    term.resize(120, 40);
    await new Promise((r) => setTimeout(r, 200));
    term.write('stty size\r');
    await waitFor(() => /40 120/.test(out), 'resized terminal', 20_000);
    term.write('exit 4\r');
    assert.equal(await exited, 4);
  });

  test('up starts a daemon in the background, status reaches it, down stops it', async () => {
    const home = mkdtempSync(join(tmpdir(), 'den-up-'));
    const port = await freePort();
    const at = ['--home', home, '--listen', `127.0.0.1:${port}`];
    const net = testNetworkEnv();
    const plain = (args: string[]) =>
      spawnSync(DEN_BIN, args, { encoding: 'utf8', env: { ...process.env, ...net, DEN_URL: '' }, timeout: 60_000 });
    try {
      const up = plain(['up', ...at]);
      assert.equal(up.status, 0, up.stderr);
      assert.match(up.stdout + up.stderr, new RegExp(`127.0.0.1:${port}`));
      assert.equal(plain(['status', ...at]).status, 0);
      const again = plain(['up', ...at]);
      assert.equal(again.status, 0, 'a second up finds the daemon running');
      const down = plain(['down', ...at]);
      assert.equal(down.status, 0, down.stderr);
      const gone = plain(['status', ...at]);
      assert.notEqual(gone.status, 0);
      assert.match(gone.stderr, /den up/);
    } finally {
      plain(['down', ...at]);
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('stop, start, restart and rm; errors are one clear line', () => {
    assert.equal(den(['stop', 'dev']).code, 0);
    const refused = den(['exec', 'dev', '--', 'true']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr.trim(), /^den: sandbox dev is stopped: start it with `den start dev`$/);
    assert.equal(den(['start', 'dev']).code, 0);
    assert.equal(den(['exec', 'dev', '--', 'cat', '/home/user/local.txt']).stdout, 'from host\n');
    assert.equal(den(['instance', 'restart', 'dev']).code, 0);
    const refusedRm = den(['rm', 'dev']);
    assert.equal(refusedRm.code, 1);
    assert.match(refusedRm.stderr, /den rm --force dev/);
    assert.equal(den(['rm', '--force', 'dev']).code, 0);
    const gone = den(['info', 'dev']);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr.trim().split('\n').length, 1);
    assert.match(gone.stderr, /no sandbox "dev"/);
    const bad = den(['create', '--memory', '-5']);
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  });
});
