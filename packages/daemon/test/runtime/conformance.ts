/**
 * One conformance suite for every `Runtime` adapter (containerd's SnapshotterSuite pattern): runsc.test.ts and
 * runc.test.ts call `runtimeSuite` with their factory. Real containers from the real base image, with the real agent
 * built from packages/agent, on a real loop-mounted disk. Needs root, the runtime binary, the base image in the store
 * and a built agent; it skips with the reason when one is missing.
 *
 * Every sandbox a test starts is registered before it is created, and `after` removes all of them and then checks
 * that nothing is left (mounts, loop devices, processes, runtime state, cgroups), even when a test failed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AgentClient, type RunResult } from '@den/agent/client';
import { newSandboxId, type ProcessSpec } from '@den/shared';
import { type DenPaths, denPaths, type SandboxPaths } from '../../src/paths.js';
import { ensureAgentRoot } from '../../src/runtime/agent-root.js';
import { cgroupDirs, cgroupProcs } from '../../src/runtime/cgroups.js';
import { cgroupPath } from '../../src/runtime/oci-spec.js';
import type { ContainerConfig, Runtime, RuntimeName } from '../../src/services/ports.js';
import { ImageStore } from '../../src/storage/image-store.js';
import { LoopOverlayRootfs, mountPoints } from '../../src/storage/rootfs.js';

export type RuntimeFactory = (paths: DenPaths) => Runtime;

const REPO_ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
const STORE = process.env.DEN_STORE || '/var/lib/den/store';
/** node of the agent root, usable from any command in the sandbox */
const NODE = ['/.den/lib/ld-linux-x86-64.so.2', '--library-path', '/.den/lib', '/.den/bin/node'];
const READY_TIMEOUT_MS = 20_000;

interface BoxOptions {
  memoryMB?: number;
  diskMB?: number;
  pids?: number;
  cpus?: number;
  env?: Record<string, string>;
}

interface Box {
  id: string;
  paths: SandboxPaths;
  config: ContainerConfig;
  agent: AgentClient;
  /** ms from the start of `run` until the agent answered */
  readyMs: number;
}

/** Why the suite cannot run here, or undefined when it can. */
async function skipReason(name: RuntimeName, factory: RuntimeFactory): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (loop devices, mounts, cgroups)';
  try {
    await factory(denPaths('/nonexistent', STORE)).version();
  } catch (err) {
    return `${name} is not available: ${(err as Error).message}`;
  }
  if (!existsSync(join(STORE, 'images', 'base.json'))) return `no base image in ${STORE}: run the install step`;
  if (!existsSync(join(REPO_ROOT, 'packages/agent/dist/src/main.js')))
    return 'the agent is not built: run npm run build';
  return undefined;
}

/** Registers the conformance suite for one runtime. Call with top-level await from a *.test.ts file. */
export async function runtimeSuite(name: RuntimeName, factory: RuntimeFactory): Promise<void> {
  const skip = await skipReason(name, factory);
  describe(`runtime conformance: ${name}`, { skip: skip ?? false, concurrency: false }, () => {
    let home: string;
    let paths: DenPaths;
    let runtime: Runtime;
    let rootfs: LoopOverlayRootfs;
    let images: ImageStore;
    let agentRootDir: string;
    const created = new Set<string>();

    before(async () => {
      home = await mkdtemp(join(tmpdir(), `den-conf-${name}-`));
      paths = denPaths(home, STORE);
      runtime = factory(paths);
      rootfs = new LoopOverlayRootfs(paths);
      images = new ImageStore(STORE);
      // A private agent root in the temp home: the suite leaves nothing in the shared store.
      agentRootDir = await ensureAgentRoot(join(home, 'agent'), REPO_ROOT);
    });

    after(async () => {
      const errors: unknown[] = [];
      for (const id of created) {
        await removeBox(id).catch((err: unknown) => errors.push(err));
      }
      for (const id of created) {
        const leaks = await leaksOf(id);
        if (leaks.length > 0) errors.push(new Error(`sandbox ${id} left: ${leaks.join('; ')}`));
      }
      if (errors.length === 0) await rm(home, { recursive: true, force: true });
      else console.error(`runtime suite ${name}: cleanup problems, keeping ${home}`, errors);
      assert.deepEqual(errors, []);
    });

    // ---- fixture ----

    async function startBox(options: BoxOptions = {}, id = newSandboxId()): Promise<Box> {
      created.add(id);
      const p = paths.sandbox(id);
      const image = await images.get('base');
      await rootfs.ensureDisk(id, options.diskMB ?? 512);
      const rootfsDir = await rootfs.mount(id, images.layerDirs(image));
      const config: ContainerConfig = {
        id,
        rootfsDir,
        bundleDir: p.bundle,
        agentRootDir,
        socketDir: p.socketDir,
        logFile: p.logFile,
        hostname: `box-${id.slice(0, 6)}`,
        env: { DEN_DEFAULT_USER: image.user, DEN_SANDBOX_ENV: JSON.stringify({ ...options.env, DEN_TEST: name }) },
        cpus: options.cpus ?? 1,
        memoryMB: options.memoryMB ?? 512,
        pids: options.pids ?? 512,
      };
      const t0 = performance.now();
      await runtime.run(config);
      const agent = new AgentClient(p.agentSocket);
      try {
        await agent.waitReady(READY_TIMEOUT_MS);
      } catch (err) {
        const log = await readFile(p.logFile, 'utf8').catch(() => '');
        throw new Error(`agent of ${id} not ready: ${(err as Error).message}\nagent.log:\n${log.slice(-3000)}`);
      }
      return { id, paths: p, config, agent, readyMs: performance.now() - t0 };
    }

    /** Stops the container and unmounts its root; the disk stays (a sandbox "stop"). */
    async function stopBox(box: Box): Promise<void> {
      await box.agent.close();
      await runtime.kill(box.id, 'SIGKILL');
      await runtime.delete(box.id);
      await rootfs.unmount(box.id);
    }

    /** Starts a stopped box again from the same disk. */
    async function restartBox(box: Box): Promise<Box> {
      const image = await images.get('base');
      await rootfs.mount(box.id, images.layerDirs(image));
      const t0 = performance.now();
      await runtime.run(box.config);
      const agent = new AgentClient(box.paths.agentSocket);
      await agent.waitReady(READY_TIMEOUT_MS);
      return { ...box, agent, readyMs: performance.now() - t0 };
    }

    async function removeBox(id: string): Promise<void> {
      await runtime.delete(id);
      await rootfs.destroy(id);
    }

    /** Everything of sandbox `id` still on the host. */
    async function leaksOf(id: string): Promise<string[]> {
      const p = paths.sandbox(id);
      const leaks: string[] = [];
      for (const m of (await mountPoints()).keys()) if (m.startsWith(p.dir)) leaks.push(`mount ${m}`);
      const loops = spawnSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], {
        encoding: 'utf8',
      });
      for (const l of loops.stdout.split('\n')) if (l.includes(p.dir)) leaks.push(`loop device ${l.trim()}`);
      for (const pid of await cgroupProcs(cgroupPath(id))) leaks.push(`process ${pid} in its cgroup`);
      for (const d of await cgroupDirs(cgroupPath(id))) leaks.push(`cgroup ${d}`);
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes(id)) leaks.push(`process ${pid}: ${cmd.split('\0').join(' ').slice(0, 120)}`);
      }
      const state = await readdir(paths.runtimeRoot(name)).catch(() => [] as string[]);
      for (const e of state) if (e.includes(id)) leaks.push(`runtime state ${e}`);
      if (await runtime.state(id)) leaks.push('runtime still knows the container');
      if (existsSync(p.dir)) leaks.push(`directory ${p.dir}`);
      return leaks;
    }

    async function sh(box: Box, script: string, spec: Partial<ProcessSpec> = {}): Promise<RunResult> {
      return box.agent.run({ cmd: ['sh', '-c', script], ...spec });
    }

    async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    // ---- tests ----

    let main: Box;

    it('reports its version', async () => {
      assert.match(await runtime.version(), name === 'runsc' ? /runsc version/ : /runc version/);
    });

    it('runs a container and reports it in state and list', async (t) => {
      main = await startBox();
      t.diagnostic(`${name}: create to agent ready ${main.readyMs.toFixed(0)} ms`);
      const st = await runtime.state(main.id);
      assert.equal(st?.status, 'running');
      assert.ok((st?.pid ?? 0) > 0);
      const listed = (await runtime.list()).find((c) => c.id === main.id);
      assert.deepEqual(listed, st);
      assert.equal(await runtime.state(newSandboxId()), undefined);
    });

    it('the container holds none of the daemon’s pipes and is not in its process group', async () => {
      const daemonFds = new Set(await fdTargets(process.pid));
      const daemonGroup = processGroup(await readFile('/proc/self/stat', 'utf8'));
      const pids = await cgroupProcs(cgroupPath(main.id));
      assert.ok(pids.length > 0);
      for (const pid of pids) {
        const shared = (await fdTargets(pid)).filter((f) => /^(pipe|socket):/.test(f) && daemonFds.has(f));
        assert.deepEqual(shared, [], `host process ${pid} holds the daemon's ${shared.join(', ')}`);
        assert.notEqual(processGroup(await readFile(`/proc/${pid}/stat`, 'utf8')), daemonGroup);
      }
    });

    it('a container whose processes were killed from outside is reported stopped and deleted cleanly', async () => {
      const box = await startBox();
      await box.agent.close();
      // what the host OOM killer does to a runsc sandbox process or a runc init
      const st = await runtime.state(box.id);
      process.kill(st?.pid ?? 0, 'SIGKILL');
      await waitFor(
        'the container to be reported stopped',
        async () => (await runtime.state(box.id))?.status === 'stopped',
      );
      assert.equal((await runtime.list()).find((c) => c.id === box.id)?.status, 'stopped');
      await removeBox(box.id);
      assert.deepEqual(await leaksOf(box.id), []);
    });

    it('kill stops the container; delete removes it; both are idempotent', async () => {
      const box = await startBox();
      await box.agent.close();
      await runtime.kill(box.id, 'SIGKILL');
      await waitFor('the container to stop', async () => (await runtime.state(box.id))?.status === 'stopped');
      await runtime.kill(box.id, 'SIGKILL');
      await runtime.delete(box.id);
      assert.equal(await runtime.state(box.id), undefined);
      assert.equal(
        (await runtime.list()).find((c) => c.id === box.id),
        undefined,
      );
      await runtime.delete(box.id);
      await runtime.kill(box.id);
      await rootfs.destroy(box.id);
      assert.deepEqual(await leaksOf(box.id), []);
    });

    it('run is idempotent for a running container', async () => {
      const before = await runtime.state(main.id);
      await runtime.run(main.config);
      assert.deepEqual(await runtime.state(main.id), before);
      assert.equal((await sh(main, 'echo ok')).stdout, 'ok\n');
    });

    it('a failed create throws RUNTIME_FAILED with the runtime error and leaves no container', async () => {
      const id = newSandboxId();
      created.add(id);
      const p = paths.sandbox(id);
      await rootfs.ensureDisk(id, 64);
      const rootfsDir = await rootfs.mount(id, images.layerDirs(await images.get('base')));
      const config: ContainerConfig = {
        ...main.config,
        id,
        rootfsDir,
        bundleDir: p.bundle,
        socketDir: p.socketDir,
        logFile: p.logFile,
        agentRootDir: join(home, 'no-such-agent-root'),
      };
      await assert.rejects(runtime.run(config), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'RUNTIME_FAILED');
        assert.match(err.message, new RegExp(`^${name} create failed: .+`));
        return true;
      });
      assert.equal(await runtime.state(id), undefined);
      await removeBox(id);
    });

    it('the agent runs commands as uid 1000 by default and as root on request', async () => {
      const user = await main.agent.run({ cmd: ['id', '-u'] });
      assert.equal(user.stdout, '1000\n');
      assert.equal((await main.agent.run({ cmd: ['whoami'] })).stdout, 'user\n');
      const root = await main.agent.run({ cmd: ['id', '-u'], user: 'root' });
      assert.equal(root.stdout, '0\n');
      const env = await sh(main, 'echo "$DEN_TEST $(hostname)"');
      assert.equal(env.stdout, `${name} ${main.config.hostname}\n`);
    });

    it('exec through the runtime is the raw baseline', async () => {
      const ok = await runtime.exec(main.id, ['sh', '-c', 'echo hi; exit 3']);
      assert.equal(ok.exitCode, 3);
      assert.equal(ok.stdout, 'hi\n');
    });

    it('users cannot write the system; root can write users’ files (CAP_DAC_OVERRIDE)', async () => {
      const etc = await sh(main, 'touch /etc/den-test');
      assert.notEqual(etc.exit.exitCode, 0);
      assert.match(etc.stderr, /Permission denied/);
      assert.equal((await sh(main, 'touch ~/mine && echo ok')).stdout, 'ok\n');
      const root = await sh(
        main,
        'mkdir -p /home/user/d && chmod 700 /home/user/d && chown user: /home/user/d && touch /etc/den-test /home/user/d/by-root && echo ok',
        { user: 'root' },
      );
      assert.equal(root.stdout, 'ok\n', root.stderr);
      // root writes into a 0700 directory of uid 1000
      const dac = await sh(main, 'chown user: /home/user && chmod 700 /home/user && touch /home/user/x && echo ok', {
        user: 'root',
      });
      assert.equal(dac.stdout, 'ok\n', dac.stderr);
    });

    it('masks kernel files and keeps /proc/sys read-only', async () => {
      for (const f of ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug']) {
        const r = await sh(main, `cat ${f} 2>/dev/null | head -c 64 | wc -c`, { user: 'root' });
        assert.equal(r.stdout.trim(), '0', `${f} is readable`);
      }
      const sys = await sh(main, 'echo 1 > /proc/sys/vm/overcommit_memory', { user: 'root' });
      assert.notEqual(sys.exit.exitCode, 0);
      assert.equal((await sh(main, 'cat /proc/sys/vm/overcommit_memory')).stdout, '0\n');
    });

    it('has the minimal capability set, and privilege rules of the runtime', async (t) => {
      const root = await sh(main, 'grep -E "^Cap(Eff|Bnd)" /proc/self/status', { user: 'root' });
      // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE AUDIT_WRITE
      assert.equal(root.stdout, 'CapEff:\t00000000200005fb\nCapBnd:\t00000000200005fb\n');
      assert.match((await sh(main, 'grep ^CapEff /proc/self/status')).stdout, /CapEff:\t0{16}/);
      const sudo = await main.agent.run({ cmd: ['sudo', '-n', 'id', '-u'] });
      if (name === 'runsc') {
        // The spec asks for no_new_privs off, but runsc 20240729 always sets it ("noNewPrivileges ignored"), so
        // whether sudo works depends on the gVisor release; report it rather than assert it.
        t.diagnostic(
          `runsc: sudo as uid 1000: ${sudo.exit.exitCode === 0 ? 'works' : `refused: ${sudo.stderr.split('\n')[0]}`}`,
        );
      } else {
        assert.notEqual(sudo.exit.exitCode, 0, 'sudo must not work under no_new_privs');
        assert.equal((await sh(main, 'grep ^NoNewPrivs /proc/self/status')).stdout, 'NoNewPrivs:\t1\n');
        const userns = await sh(main, 'unshare -U true', { user: 'root' });
        assert.notEqual(userns.exit.exitCode, 0, 'seccomp must refuse user namespaces');
      }
    });

    it('has a working loopback interface', async () => {
      const js =
        "const n=require('net');const s=n.createServer(c=>c.end('pong')).listen(0,'127.0.0.1',()=>" +
        "{n.connect(s.address().port,'127.0.0.1').on('data',d=>{console.log(String(d));process.exit(0)})})";
      const r = await main.agent.run({ cmd: [...NODE, '-e', js], timeoutMs: 10_000 });
      assert.equal(r.stdout, 'pong\n', r.stderr);
    });

    it('keeps files across delete and run with the same disk', async () => {
      const box = await startBox();
      const w = await sh(
        box,
        'echo home > ~/h && echo tmp > /tmp/t && mkdir -p ~/.cache && echo c > ~/.cache/c && echo ok',
      );
      assert.equal(w.stdout, 'ok\n', w.stderr);
      assert.equal((await sh(box, 'echo etc > /etc/den-persist && echo ok', { user: 'root' })).stdout, 'ok\n');
      // the writes land on the sandbox's disk, not in a runtime-internal layer
      assert.equal(await readFile(join(box.paths.diskMount, 'upper/home/user/h'), 'utf8'), 'home\n');
      await stopBox(box);
      assert.equal((await runtime.state(box.id))?.status, undefined);
      const again = await restartBox(box);
      const r = await sh(again, 'cat ~/h /tmp/t ~/.cache/c /etc/den-persist; stat -c %U ~/h');
      assert.equal(r.stdout, 'home\ntmp\nc\netc\nuser\n', r.stderr);
      await again.agent.close();
      await removeBox(box.id);
      assert.deepEqual(await leaksOf(box.id), []);
    });

    it('a memory hog is killed at the limit; the sandbox and its agent survive', async (t) => {
      const box = await startBox({ memoryMB: 256 });
      const hog = "const a=[];for(let i=0;i<2048;i++)a.push(Buffer.alloc(1<<20,1));console.log('survived')";
      const r = await box.agent.run({ cmd: [...NODE, '-e', hog], timeoutMs: 60_000 });
      assert.notEqual(r.stdout, 'survived\n');
      assert.equal(r.exit.signal, 'SIGKILL', `hog exit ${JSON.stringify(r.exit)}`);
      assert.equal((await runtime.state(box.id))?.status, 'running');
      assert.equal((await sh(box, 'echo alive')).stdout, 'alive\n');
      // memory is usable again after the kill
      const small = await box.agent.run({ cmd: [...NODE, '-e', "Buffer.alloc(100<<20,1);console.log('ok')"] });
      assert.equal(small.stdout, 'ok\n', small.stderr);
      const cg = (await cgroupDirs(cgroupPath(box.id))).find((d) => d.includes('/memory/'));
      if (cg) {
        const max = Number(await readFile(join(cg, 'memory.max_usage_in_bytes'), 'utf8'));
        t.diagnostic(`${name}: host cgroup peak ${(max / 2 ** 20).toFixed(0)} MiB for memoryMB 256`);
      }
      const log = await readFile(box.paths.logFile, 'utf8');
      if (name === 'runsc') assert.match(log, /den oom-guard: .* killed pid/);
      await box.agent.close();
      await removeBox(box.id);
    });

    it('a fork bomb is bounded; the host and other sandboxes are unaffected; the sandbox recovers', async (t) => {
      const box = await startBox({ pids: 128 });
      const bomb = box.agent.run({ cmd: ['bash', '-c', 'b(){ b | b & }; b; sleep 10'], timeoutMs: 6000 });
      await new Promise((r) => setTimeout(r, 3000));
      // another sandbox answers during the bomb, and the host can still start processes
      const t0 = performance.now();
      assert.equal((await sh(main, 'echo other')).stdout, 'other\n');
      t.diagnostic(`${name}: other sandbox answered in ${(performance.now() - t0).toFixed(0)} ms during the bomb`);
      assert.equal(spawnSync('true').status, 0);
      const hostTasks = await countTasks(await cgroupProcs(cgroupPath(box.id)));
      t.diagnostic(`${name}: host tasks of the bombed sandbox: ${hostTasks}`);
      await bomb.catch(() => undefined);
      // the sandbox recovers: kill what is left of uid 1000 and run commands again
      await waitFor(
        'the bomb to be cleaned up',
        async () => {
          const r = await sh(box, 'kill -9 -1 2>/dev/null; sleep 0.2; ps -u user --no-headers | wc -l').catch(
            () => undefined,
          );
          return r?.stdout.trim() === '3'; // sh, ps and wc themselves
        },
        30_000,
      );
      assert.equal((await sh(box, 'echo recovered')).stdout, 'recovered\n');
      assert.equal((await runtime.state(box.id))?.status, 'running');
      await box.agent.close();
      await removeBox(box.id);
    });

    it('a full disk gives ENOSPC inside; the host is unaffected', async () => {
      const box = await startBox({ diskMB: 64 });
      const fill = await sh(box, 'dd if=/dev/zero of=$HOME/fill bs=1M count=128 2>&1; sync');
      assert.match(fill.stdout, /No space left on device/);
      const more = await sh(box, 'head -c 1048576 /dev/zero > ~/more');
      assert.match(more.stderr, /No space left on device/);
      // host writes next to the sandbox's disk work
      await writeFile(join(home, 'host-file'), Buffer.alloc(1 << 20));
      assert.equal((await sh(box, 'rm ~/fill && echo x > ~/more && cat ~/more')).stdout, 'x\n');
      await box.agent.close();
      await removeBox(box.id);
    });

    it('reports idle memory of a sandbox', async (t) => {
      await new Promise((r) => setTimeout(r, 1000));
      let pss = 0;
      const pids = await cgroupProcs(cgroupPath(main.id));
      // systrap runs one guest address space in several host processes sharing one mm (CLONE_VM): count it once
      const spaces = new Set<string>();
      for (const pid of pids) {
        const maps = await readFile(`/proc/${pid}/maps`, 'utf8').catch(() => '');
        if (spaces.has(maps)) continue;
        spaces.add(maps);
        const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
        pss += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0);
      }
      t.diagnostic(
        `${name}: idle PSS ${(pss / 1024).toFixed(1)} MiB over ${pids.length} host processes ` +
          `(${spaces.size} address spaces), the agent included; its node binary is not shared with other sandboxes here`,
      );
      assert.ok(pss > 0);
    });

    it('delete leaves nothing behind', async () => {
      await main.agent.close();
      await removeBox(main.id);
      assert.deepEqual(await leaksOf(main.id), []);
    });
  });
}

async function fdTargets(pid: number): Promise<string[]> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return targets.filter(Boolean);
}

/** Field 5 (pgrp) of /proc/<pid>/stat, after the parenthesised command name. */
function processGroup(stat: string): number {
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

async function countTasks(pids: number[]): Promise<number> {
  let n = 0;
  for (const pid of pids) n += (await readdir(`/proc/${pid}/task`).catch(() => [])).length;
  return n;
}
