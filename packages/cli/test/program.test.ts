import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEN_VERSION } from '@den/shared';
import { runCli } from '../src/cli.js';
import type { Context, Handlers } from '../src/program.js';

interface Call {
  handler: keyof Handlers;
  ctx: Context;
  args: unknown;
}

/** Handlers that record what parsing produced; no daemon involved. */
function recorder(exitCode = 0): { handlers: Handlers; calls: Call[] } {
  const calls: Call[] = [];
  const record =
    (handler: keyof Handlers) =>
    async (ctx: Context, args?: unknown): Promise<number> => {
      calls.push({ handler, ctx, args });
      return exitCode;
    };
  const handlers = Object.fromEntries(
    (
      [
        'up',
        'down',
        'status',
        'images',
        'create',
        'list',
        'info',
        'lifecycle',
        'remove',
        'exec',
        'run',
        'cp',
        'ports',
        'network',
        'preview',
        'logs',
      ] as const
    ).map((h) => [h, record(h)]),
  ) as unknown as Handlers;
  return { handlers, calls };
}

class Sink {
  text = '';
  write(chunk: string | Uint8Array): boolean {
    this.text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }
}

async function parse(argv: string[], env: Record<string, string> = {}) {
  const { handlers, calls } = recorder();
  const stderr = new Sink();
  const stdout = new Sink();
  const code = await runCli(argv, { handlers, env, stderr, stdout });
  return { code, calls, call: calls[0], stderr: stderr.text, stdout: stdout.text };
}

describe('den argv parsing', () => {
  it('parses network options of create and the network and ports commands', async () => {
    const created = await parse(['create', '--network', 'allowlist', '--allow', '10.0.0.0/8', '--allow', 'x.org']);
    assert.deepEqual((created.call!.args as { network: unknown }).network, {
      policy: 'allowlist',
      allow: ['10.0.0.0/8', 'x.org'],
    });
    const pub = await parse(['create', '--public-preview', '--network', 'none']);
    assert.deepEqual((pub.call!.args as { preview: unknown }).preview, { public: true });
    const bad = await parse(['create', '--allow', 'x.org']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--allow needs --network allowlist/);
    const net = await parse(['network', 'dev', 'allowlist', '--allow', 'pypi.org']);
    assert.deepEqual(net.call?.args, { ref: 'dev', policy: 'allowlist', allow: ['pypi.org'] });
    const wrong = await parse(['network', 'dev', 'open']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /must be one of none, allowlist, full/);
    assert.deepEqual((await parse(['ports', 'dev', '--json'])).call?.args, { ref: 'dev', json: true });
  });

  it('parses exec options and keeps everything after -- as the command', async () => {
    const { code, call } = await parse([
      'exec',
      'dev',
      '-u',
      'root',
      '-w',
      '/tmp',
      '-e',
      'A=1',
      '-e',
      'B=x=y',
      '--timeout',
      '1.5',
      '-it',
      '--',
      'ls',
      '-l',
      '--url',
      '/',
    ]);
    assert.equal(code, 0);
    assert.equal(call?.handler, 'exec');
    assert.deepEqual(call?.args, {
      ref: 'dev',
      cmd: ['ls', '-l', '--url', '/'],
      env: { A: '1', B: 'x=y' },
      interactive: true,
      tty: true,
      user: 'root',
      cwd: '/tmp',
      timeoutMs: 1500,
    });
  });

  it('runs exec without -- when the command has no options', async () => {
    const { call } = await parse(['exec', 'dev', 'echo', 'hi']);
    assert.deepEqual(call?.args, { ref: 'dev', cmd: ['echo', 'hi'], env: {}, interactive: false, tty: false });
  });

  it('explains -- when a command option is taken for a den option', async () => {
    const { code, calls, stderr } = await parse(['exec', 'dev', 'ls', '-l']);
    assert.equal(code, 2);
    assert.equal(calls.length, 0);
    assert.equal(stderr, "den: unknown option '-l'; put the command to run after `--`, e.g. den exec REF -- ls -l\n");
  });

  it('parses create with limits, env and metadata', async () => {
    const { call } = await parse([
      'create',
      '--name',
      'dev',
      '--image',
      'base',
      '--runtime',
      'runc',
      '--cpus',
      '0.5',
      '--memory',
      '2048',
      '--disk',
      '8192',
      '--pids',
      '512',
      '-e',
      'CI=1',
      '--metadata',
      'team=ml',
      '--json',
    ]);
    assert.equal(call?.handler, 'create');
    assert.deepEqual(call?.args, {
      name: 'dev',
      image: 'base',
      runtime: 'runc',
      cpus: 0.5,
      memoryMB: 2048,
      diskMB: 8192,
      pids: 512,
      env: { CI: '1' },
      metadata: { team: 'ml' },
      json: true,
    });
  });

  it('rejects malformed numbers, runtimes and pairs as usage errors (exit 2, one line)', async () => {
    for (const argv of [
      ['create', '--cpus', 'many'],
      ['create', '--memory', '1.5'],
      ['create', '--runtime', 'docker'],
      ['create', '-e', 'NOEQUALS'],
      ['exec', 'dev', '--timeout', '-1', '--', 'true'],
      ['ls', '--state', 'sleeping'],
    ]) {
      const { code, calls, stderr } = await parse(argv);
      assert.equal(code, 2, argv.join(' '));
      assert.equal(calls.length, 0);
      assert.match(stderr, /^den: [^\n]+\n$/, argv.join(' '));
    }
  });

  it('maps instance subcommands onto the same handlers', async () => {
    assert.deepEqual((await parse(['instance', 'create', 'dev', '--cpus', '2'])).call?.args, {
      name: 'dev',
      cpus: 2,
      env: {},
      metadata: {},
      json: false,
    });
    assert.equal((await parse(['instance', 'list'])).call?.handler, 'list');
    assert.deepEqual((await parse(['instance', 'stop', 'dev'])).call?.args, { action: 'stop', refs: ['dev'] });
    assert.deepEqual((await parse(['instance', 'delete', 'dev', '--force'])).call?.args, {
      refs: ['dev'],
      force: true,
    });
    const conflict = await parse(['instance', 'create', 'dev', '--name', 'other']);
    assert.equal(conflict.code, 2);
  });

  it('parses lifecycle, rm, info, ls, status, images, run and cp', async () => {
    assert.deepEqual((await parse(['restart', 'a', 'b'])).call?.args, { action: 'restart', refs: ['a', 'b'] });
    assert.deepEqual((await parse(['rm', 'a'])).call?.args, { refs: ['a'], force: false });
    assert.deepEqual((await parse(['info', 'dev', '--json'])).call?.args, { ref: 'dev', json: true });
    assert.deepEqual((await parse(['ls', '--state', 'running'])).call?.args, { json: false, state: 'running' });
    assert.deepEqual((await parse(['list'])).call?.args, { json: false });
    assert.deepEqual((await parse(['status', '--json'])).call?.args, { json: true });
    assert.deepEqual((await parse(['images'])).call?.args, { json: false });
    assert.deepEqual((await parse(['run', 'dev'])).call?.args, { ref: 'dev', cmd: [], env: {} });
    assert.deepEqual((await parse(['run', 'dev', '-u', 'root', '--', 'htop', '-d', '5'])).call?.args, {
      ref: 'dev',
      cmd: ['htop', '-d', '5'],
      env: {},
      user: 'root',
    });
    assert.deepEqual((await parse(['cp', './a.txt', 'dev:/tmp/'])).call?.args, {
      direction: 'upload',
      local: './a.txt',
      ref: 'dev',
      remote: '/tmp/',
    });
  });

  it('accepts global options before or after the subcommand, flags beating the environment', async () => {
    const env = { DEN_URL: 'http://env:1', DEN_HOME: '/env/home' };
    assert.equal((await parse(['--url', 'http://a:1', 'ls'], env)).call?.ctx.config.url, 'http://a:1');
    assert.equal((await parse(['ls', '--url', 'http://b:2'], env)).call?.ctx.config.url, 'http://b:2');
    assert.equal((await parse(['ls'], env)).call?.ctx.config.url, 'http://env:1');
    const up = (await parse(['up', '--home', '/tmp/den', '--listen', '127.0.0.1:9000'], env)).call;
    assert.equal(up?.handler, 'up');
    assert.deepEqual(up?.ctx.config, {
      url: 'http://127.0.0.1:9000',
      home: '/tmp/den',
      listen: '127.0.0.1:9000',
      listenUrl: 'http://127.0.0.1:9000',
    });
    assert.equal((await parse(['instance', '--url', 'http://c:3', 'list'])).call?.ctx.config.url, 'http://c:3');
  });

  it('reports a bad listen address as a usage error', async () => {
    const { code, stderr } = await parse(['ls', '--listen', 'localhost']);
    assert.equal(code, 2);
    assert.match(stderr, /^den: listen address "localhost" is invalid: give HOST:PORT/);
  });

  it('exits 0 for --help and --version, 2 with usage for a missing command', async () => {
    const version = await parse(['--version']);
    assert.equal(version.code, 0);
    assert.equal(version.stdout, `${DEN_VERSION}\n`);
    const help = await parse(['exec', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: den exec \[options\] <ref> <cmd\.\.\.>/);
    const bare = await parse([]);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /Usage: den/);
    const unknown = await parse(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^den: unknown command 'frobnicate'/);
  });

  it('passes the handler exit status through', async () => {
    const { handlers } = recorder(124);
    assert.equal(await runCli(['exec', 'dev', '--', 'sleep', '9'], { handlers, env: {}, stderr: new Sink() }), 124);
  });
});
