import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DenClient, Sandbox, type SandboxInfo } from '@den/sdk';
import { destroyDaemon, startDaemon, type TestDaemon, waitFor } from '../src/harness.js';
import { httpGet } from '../src/http.js';

/** Idle checks every 250 ms, so idle timeouts of a few seconds can be tested quickly. */
const IDLE_ENV = { DEN_IDLE_CHECK_MS: '250' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('idle auto-pause', () => {
  let daemon: TestDaemon;
  let den: DenClient;

  before(async () => {
    daemon = await startDaemon({ env: IDLE_ENV });
    den = new DenClient({ url: daemon.url });
  });
  after(async () => {
    if (daemon) await destroyDaemon(daemon);
  });

  const state = async (sbx: Sandbox): Promise<SandboxInfo> => den.getSandbox(sbx.id);
  const pausedSoon = (sbx: Sandbox) =>
    waitFor(async () => (await state(sbx)).state === 'paused', `sandbox ${sbx.id} to pause when idle`, 30_000);

  test('runsc: an idle sandbox pauses with its memory, and the next call wakes it', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runsc', memoryMB: 512, idleTimeoutMs: 2_000 });
    assert.equal((await state(sbx)).idleTimeoutMs, 2_000);
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await pausedSoon(sbx);
    const paused = await state(sbx);
    assert.equal(paused.pause?.memory, true, paused.pause?.reason ?? '');
    assert.ok(paused.lastActivityAt, 'the last activity was saved');
    assert.equal(await sbx.files.read('/home/user/kept.txt'), 'kept', 'a file call wakes it');
    assert.equal((await state(sbx)).state, 'running');
    await pausedSoon(sbx);
    await sbx.kill();
  });

  test('CPU use inside, an open PTY, file calls and preview traffic keep a sandbox awake', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256, idleTimeoutMs: 1_500 });
    // A busy loop: a build is not idle.
    await sbx.commands.run("nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &");
    await sleep(4_000);
    assert.equal((await state(sbx)).state, 'running', 'CPU use counts as activity');
    await sbx.commands.run('pkill -f "while :"');

    // An open terminal session, even a quiet one.
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} });
    await sleep(4_000);
    assert.equal((await state(sbx)).state, 'running', 'an open PTY counts as activity');
    await pty.kill();

    // File calls every half second.
    for (let i = 0; i < 8; i++) {
      await sbx.files.write('/home/user/tick.txt', String(i));
      await sleep(500);
    }
    assert.equal((await state(sbx)).state, 'running', 'file calls count as activity');

    // Preview requests every half second (through the proxy's fast lane).
    await sbx.commands.run('nohup python3 -m http.server 8000 --directory /home/user >/dev/null 2>&1 &');
    await sbx.ports.waitFor(8000);
    for (let i = 0; i < 8; i++) {
      const r = await httpGet(daemon.url, '/tick.txt', {
        host: sbx.getHost(8000),
        'x-den-preview-token': sbx.previewToken,
      });
      assert.equal(r.status, 200);
      await sleep(500);
    }
    assert.equal((await state(sbx)).state, 'running', 'preview traffic counts as activity');

    await pausedSoon(sbx);
    const paused = await state(sbx);
    assert.equal(paused.pause?.memory, false, 'runc pauses the filesystem only');
    // A preview request wakes it; the server was a den-started process and runc kept no memory, so start it again.
    await sbx.commands.run('nohup python3 -m http.server 8000 --directory /home/user >/dev/null 2>&1 &');
    await sbx.ports.waitFor(8000);
    await sbx.kill();
  });

  test('the idle timeout can be changed or turned off on a live sandbox; bad values are refused', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256, idleTimeoutMs: 1_500 });
    const off = await sbx.lifecycle.update({ idleTimeoutMs: 0 });
    assert.equal(off.idleTimeoutMs, null);
    await sleep(3_000);
    assert.equal((await state(sbx)).state, 'running', 'no idle timeout, no pause');
    const on = await sbx.lifecycle.update({ idleTimeoutMs: 1_000, onTimeout: 'stop' });
    assert.deepEqual([on.idleTimeoutMs, on.onTimeout], [1_000, 'stop']);
    await pausedSoon(sbx);

    await assert.rejects(sbx.lifecycle.update({ idleTimeoutMs: -1 }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(sbx.lifecycle.update({ idleTimeoutMs: 365 * 24 * 3600 * 1000 }), {
      code: 'INVALID_ARGUMENT',
    });
    await assert.rejects(sbx.lifecycle.update({}), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(Sandbox.create({ url: daemon.url, idleTimeoutMs: 1.5 }), { code: 'INVALID_ARGUMENT' });
    await sbx.kill();
  });
});

describe('idle clock across a daemon restart', () => {
  let daemon: TestDaemon;

  before(async () => {
    daemon = await startDaemon({ env: IDLE_ENV });
  });
  after(async () => {
    if (daemon) await destroyDaemon(daemon);
  });

  test('the last activity lives in the database: a restart neither resets nor loses the idle clock', async () => {
    const sbx = await Sandbox.create({ url: daemon.url, runtime: 'runc', memoryMB: 256, idleTimeoutMs: 5_000 });
    const beforeWrite = Date.now();
    await sbx.files.write('/home/user/a.txt', 'a');
    let den = new DenClient({ url: daemon.url });
    await waitFor(
      async () => Date.parse((await den.getSandbox(sbx.id)).lastActivityAt ?? '') >= beforeWrite,
      'the file call to be saved as the last activity',
    );
    const saved = (await den.getSandbox(sbx.id)).lastActivityAt;
    daemon = await daemon.restart();
    den = new DenClient({ url: daemon.url });
    const after = await den.getSandbox(sbx.id);
    assert.equal(after.state, 'running', 'the sandbox kept running across the restart');
    assert.equal(after.lastActivityAt, saved, 'the restart did not count as activity');
    await waitFor(
      async () => (await den.getSandbox(sbx.id)).state === 'paused',
      'the idle pause after the restart',
      30_000,
    );
    await den.deleteSandbox(sbx.id);
  });
});
