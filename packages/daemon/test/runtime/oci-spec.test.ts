import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AGENT_SOCKET,
  buildSpec,
  CAPABILITIES,
  NOFILE_HARD,
  RUNSC_MEMORY_OVERHEAD_MB,
  RUNSC_PIDS_BACKSTOP_FACTOR,
} from '../../src/runtime/oci-spec.js';
import type { ContainerConfig } from '../../src/services/ports.js';

const config: ContainerConfig = {
  id: 'abcdefghij0123456789',
  rootfsDir: '/d/rootfs',
  bundleDir: '/d/bundle',
  agentRootDir: '/store/agent/h',
  socketDir: '/d/sock',
  logFile: '/d/agent.log',
  hostname: 'box',
  env: { DEN_DEFAULT_USER: 'user', DEN_SANDBOX_ENV: '{}', DEN_AGENT_SOCKET: '/elsewhere' },
  cpus: 1.5,
  memoryMB: 512,
  pids: 256,
};

describe('buildSpec', () => {
  const runsc = buildSpec(config, 'runsc');
  const runc = buildSpec(config, 'runc', { hostNofileHard: 20000 });

  it('starts the agent under tini through its own loader, as root, with the agent socket env', () => {
    for (const spec of [runsc, runc]) {
      assert.deepEqual(spec.process.args.slice(0, 4), ['/.den/bin/tini', '-s', '-g', '--']);
      assert.equal(spec.process.args.at(-1), '/.den/agent/packages/agent/dist/agent.bundle.mjs');
      assert.deepEqual(spec.process.user, { uid: 0, gid: 0 });
      assert.ok(spec.process.env.includes(`DEN_AGENT_SOCKET=${AGENT_SOCKET}`), 'den owns DEN_AGENT_SOCKET');
      assert.ok(spec.process.env.includes('DEN_DEFAULT_USER=user'));
      assert.ok(spec.process.env.some((e) => e.startsWith('PATH=')));
      assert.deepEqual(spec.process.capabilities.bounding, [...CAPABILITIES]);
      assert.deepEqual(spec.process.capabilities.inheritable, []);
      assert.equal(spec.hostname, 'box');
      assert.equal(spec.linux.cgroupsPath, '/den/abcdefghij0123456789');
      assert.deepEqual(spec.linux.resources.cpu, { quota: 150000, period: 100000 });
      assert.deepEqual(spec.linux.namespaces.map((n) => n.type).slice(0, 5), ['pid', 'ipc', 'uts', 'mount', 'network']);
      assert.ok(spec.linux.maskedPaths.includes('/proc/kcore'));
      assert.ok(spec.linux.readonlyPaths.includes('/proc/sys'));
    }
  });

  it('mounts the agent root read-only and the socket dir after /run', () => {
    for (const spec of [runsc, runc]) {
      const dests = spec.mounts.map((m) => m.destination);
      assert.ok(dests.indexOf('/run/den') > dests.indexOf('/run'));
      const den = spec.mounts.find((m) => m.destination === '/.den');
      assert.equal(den?.source, '/store/agent/h');
      assert.ok(den?.options?.includes('ro'));
      assert.equal(spec.mounts.find((m) => m.destination === '/run/den')?.source, '/d/sock');
      assert.equal(spec.mounts.find((m) => m.destination === '/sys')?.options?.includes('ro'), true);
    }
  });

  it('runc: no new privileges, seccomp, a pids cgroup at the limit, the exact memory limit', () => {
    assert.equal(runc.process.noNewPrivileges, true);
    assert.equal(runc.linux.resources.pids?.limit, 256);
    assert.deepEqual(runc.linux.resources.memory, { limit: 512 * 2 ** 20, swap: 512 * 2 ** 20 });
    assert.equal(runc.linux.seccomp?.defaultAction, 'SCMP_ACT_ALLOW');
    assert.ok(runc.linux.seccomp?.syscalls.some((s) => s.names.includes('unshare') && s.args?.length));
    assert.equal(
      runc.process.rlimits.find((r) => r.type === 'RLIMIT_NPROC'),
      undefined,
    );
    assert.deepEqual(
      runc.process.rlimits.find((r) => r.type === 'RLIMIT_NOFILE'),
      {
        type: 'RLIMIT_NOFILE',
        soft: 1024,
        hard: 20000,
      },
    );
    assert.equal(runc.process.args.includes('--import'), false);
    assert.equal(
      runc.mounts.some((m) => m.destination === '/tmp'),
      false,
    );
  });

  it('runsc: RLIMIT_NPROC inside, a high pids backstop, the OOM guard, /tmp on the disk', () => {
    assert.equal(runsc.process.noNewPrivileges, false);
    assert.deepEqual(
      runsc.process.rlimits.find((r) => r.type === 'RLIMIT_NPROC'),
      {
        type: 'RLIMIT_NPROC',
        soft: 256,
        hard: 256,
      },
    );
    assert.equal(runsc.process.rlimits.find((r) => r.type === 'RLIMIT_NOFILE')?.hard, NOFILE_HARD);
    assert.ok((runsc.linux.resources.pids?.limit ?? 0) >= 256 * RUNSC_PIDS_BACKSTOP_FACTOR);
    assert.deepEqual(runsc.linux.resources.memory, { limit: (512 + RUNSC_MEMORY_OVERHEAD_MB) * 2 ** 20 });
    assert.ok(runsc.process.env.includes('DEN_OOM_GUARD_MB=512'));
    const i = runsc.process.args.indexOf('--import');
    assert.equal(runsc.process.args[i + 1], '/.den/guard/oom-guard.mjs');
    assert.equal(runsc.linux.seccomp, undefined);
    assert.deepEqual(
      runsc.mounts.find((m) => m.destination === '/tmp'),
      {
        destination: '/tmp',
        type: 'bind',
        source: '/d/rootfs/tmp',
        options: ['rbind', 'rw'],
      },
    );
  });
});
