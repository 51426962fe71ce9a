import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { DenError } from '@den/shared';
import type { AgentClient } from '../src/client.js';
import { type AgentFixture, startAgent } from './agent-fixture.js';

describe('agent: files', () => {
  let agent: AgentFixture;
  let client: AgentClient;
  let root: string;

  before(async () => {
    agent = await startAgent();
    client = agent.client;
    root = join(agent.dir, 'files');
    await mkdir(root);
  });
  after(async () => {
    await agent.stop();
  });

  it('writes a file, creating parents owned by the user, and reads it back', async () => {
    const path = join(root, 'a/b/c.txt');
    const entry = await client.writeFile(path, 'hello\n');
    assert.equal(entry.path, path);
    assert.equal(entry.name, 'c.txt');
    assert.equal(entry.type, 'file');
    assert.equal(entry.size, 6);
    assert.equal(entry.mode, 0o644);
    assert.equal(entry.owner, 'nobody');
    assert.ok(!Number.isNaN(Date.parse(entry.modifiedAt)));
    assert.equal((await stat(join(root, 'a'))).uid, 65534);
    assert.equal((await stat(join(root, 'a/b'))).uid, 65534);
    assert.equal((await stat(root)).uid, 0, 'an existing parent keeps its owner');

    const { stream, size } = await client.readFile(path);
    assert.equal(size, 6);
    assert.equal(await text(stream), 'hello\n');

    const empty = await client.writeFile(join(root, 'empty'), Buffer.alloc(0), { user: 'root' });
    assert.equal(empty.size, 0);
    assert.equal(empty.owner, 'root');
    const read = await client.readFile(join(root, 'empty'));
    assert.equal(read.size, 0);
    assert.equal(await text(read.stream), '');
  });

  it('replaces a file atomically, keeping its permission bits', async () => {
    const path = join(root, 'keep-mode.sh');
    await client.writeFile(path, 'v1');
    await chmod(path, 0o750);
    const entry = await client.writeFile(path, Readable.from([Buffer.from('v'), Buffer.from('2')]));
    assert.equal(entry.mode, 0o750);
    assert.equal(await text((await client.readFile(path)).stream), 'v2');
    const leftovers = (await readdir(root)).filter((n) => n.includes('.den-'));
    assert.deepEqual(leftovers, [], 'no temp files');
  });

  it('stats and lists, to a depth', async () => {
    const dir = join(root, 'tree');
    await client.writeFile(join(dir, 'x/y/z.txt'), 'z');
    await client.writeFile(join(dir, 'top.txt'), 'top');
    await symlink('top.txt', join(dir, 'link'));

    const dirEntry = await client.stat(dir);
    assert.equal(dirEntry.type, 'dir');
    const link = await client.stat(join(dir, 'link'));
    assert.equal(link.type, 'symlink');
    assert.equal(link.symlinkTarget, 'top.txt');

    const one = await client.list(dir);
    assert.deepEqual(
      one.map((e) => [e.name, e.type]),
      [
        ['link', 'symlink'],
        ['top.txt', 'file'],
        ['x', 'dir'],
      ],
    );
    const deep = await client.list(dir, 3);
    assert.deepEqual(
      deep.map((e) => e.path.slice(dir.length)),
      ['/link', '/top.txt', '/x', '/x/y', '/x/y/z.txt'],
    );
    await assert.rejects(client.list(join(dir, 'top.txt')), { code: 'NOT_A_DIRECTORY' });
    await assert.rejects(client.list(dir, 0), { code: 'INVALID_ARGUMENT' });
  });

  it('makes directories, recursively and idempotently', async () => {
    const path = join(root, 'm/n/o');
    const entry = await client.makeDir(path);
    assert.equal(entry.type, 'dir');
    assert.equal(entry.owner, 'nobody');
    assert.equal((await stat(join(root, 'm'))).uid, 65534);
    assert.equal((await client.makeDir(path, { user: 'root' })).owner, 'nobody', 'an existing dir is left alone');
    await client.writeFile(join(root, 'plain'), 'x');
    await assert.rejects(client.makeDir(join(root, 'plain')), { code: 'FILE_EXISTS' });
    await assert.rejects(client.makeDir(join(root, 'plain/sub')), { code: 'NOT_A_DIRECTORY' });
  });

  it('moves files and directories, creating the target parents', async () => {
    await client.writeFile(join(root, 'mv/src.txt'), 'moved');
    const entry = await client.move(join(root, 'mv/src.txt'), join(root, 'mv/deeper/dst.txt'));
    assert.equal(entry.path, join(root, 'mv/deeper/dst.txt'));
    assert.equal(entry.size, 5);
    await assert.rejects(client.stat(join(root, 'mv/src.txt')), { code: 'FILE_NOT_FOUND' });
    const dir = await client.move(join(root, 'mv/deeper'), join(root, 'mv2'));
    assert.equal(dir.type, 'dir');
    assert.equal(await text((await client.readFile(join(root, 'mv2/dst.txt'))).stream), 'moved');
    await assert.rejects(client.move(join(root, 'nope'), join(root, 'nope2')), { code: 'FILE_NOT_FOUND' });
  });

  it('removes files and whole trees', async () => {
    await client.writeFile(join(root, 'rm/a/b.txt'), 'b');
    await client.remove(join(root, 'rm'));
    await assert.rejects(client.stat(join(root, 'rm')), { code: 'FILE_NOT_FOUND' });
    await assert.rejects(client.remove(join(root, 'rm')), { code: 'FILE_NOT_FOUND' });
    await assert.rejects(client.remove('/'), { code: 'INVALID_ARGUMENT' });
  });

  it('reports missing files and directories given as files', async () => {
    await assert.rejects(client.readFile(join(root, 'missing')), (err: DenError) => {
      assert.equal(err.code, 'FILE_NOT_FOUND');
      assert.equal(err.status, 404);
      assert.match(err.message, /missing/);
      return true;
    });
    await assert.rejects(client.readFile(root), { code: 'IS_A_DIRECTORY' });
    await assert.rejects(client.writeFile(root, 'x'), { code: 'IS_A_DIRECTORY' });
    await assert.rejects(client.writeFile(join(root, 'f.txt'), 'x', { user: 'bob' }), { code: 'INVALID_ARGUMENT' });
  });

  it('rejects relative paths and paths with ..', async () => {
    const cases: Array<() => Promise<unknown>> = [
      () => client.readFile('relative/file'),
      () => client.writeFile('relative/file', 'x'),
      () => client.stat(`${root}/../etc/passwd`),
      () => client.list('..'),
      () => client.makeDir(`${root}/a/../../b`),
      () => client.move(`${root}/a`, 'b'),
      () => client.remove(`${root}/..`),
      () => client.readFile(''),
    ];
    for (const call of cases) {
      await assert.rejects(call(), (err: DenError) => {
        assert.equal(err.code, 'INVALID_ARGUMENT');
        assert.equal(err.status, 400);
        return true;
      });
    }
  });

  it('streams 64 MiB both ways without corruption', async (t) => {
    const size = 64 * 1024 * 1024;
    const path = join(root, 'big.bin');
    const sent = createHash('sha256');
    let produced = 0;
    const source = new Readable({
      read() {
        if (produced >= size) {
          this.push(null);
          return;
        }
        const chunk = randomBytes(Math.min(1024 * 1024, size - produced));
        produced += chunk.length;
        sent.update(chunk);
        this.push(chunk);
      },
    });
    let start = performance.now();
    const entry = await client.writeFile(path, source);
    const up = performance.now() - start;
    assert.equal(entry.size, size);

    start = performance.now();
    const { stream, size: announced } = await client.readFile(path);
    assert.equal(announced, size);
    const received = createHash('sha256');
    let got = 0;
    for await (const chunk of stream) {
      received.update(chunk as Buffer);
      got += (chunk as Buffer).length;
    }
    const down = performance.now() - start;
    assert.equal(got, size);
    assert.equal(received.digest('hex'), sent.digest('hex'));
    const mib = (ms: number): string => ((64 * 1000) / ms).toFixed(0);
    t.diagnostic(
      `64 MiB upload ${up.toFixed(0)} ms (${mib(up)} MiB/s), download ${down.toFixed(0)} ms (${mib(down)} MiB/s)`,
    );
  });

  it('answers DISK_FULL when the disk fills, leaving no temp file', async (t) => {
    const mnt = join(agent.dir, 'small');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'den-agent-test', mnt]);
    } catch (err) {
      t.skip(`needs root to mount a tmpfs: ${(err as Error).message}`);
      return;
    }
    try {
      const body = Readable.from(
        (function* () {
          for (let i = 0; i < 16; i++) yield Buffer.alloc(256 * 1024, 1);
        })(),
      );
      await assert.rejects(client.writeFile(join(mnt, 'big.bin'), body), (err: DenError) => {
        assert.equal(err.code, 'DISK_FULL');
        assert.equal(err.status, 507);
        assert.match(err.message, /big\.bin/);
        return true;
      });
      assert.deepEqual(await readdir(mnt), [], 'the temp file was removed');
      // The session still works after the early answer.
      assert.equal((await client.writeFile(join(mnt, 'small.txt'), 'fits')).size, 4);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});

async function text(stream: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
