import { join } from 'node:path';
import type { ContainerConfig, RuntimeName } from '../services/ports.js';

/**
 * OCI runtime spec (config.json) generation for one sandbox container. Only the fields den sets are typed; see
 * https://github.com/opencontainers/runtime-spec/blob/main/config.md for their meaning.
 */

/** Where the agent root (agent-root.ts) is mounted and how the agent is started from it. */
export const AGENT_MOUNT = '/.den';
export const AGENT_SOCKET_DIR = '/run/den';
export const AGENT_SOCKET = `${AGENT_SOCKET_DIR}/agent.sock`;
/** path of the agent's entry point inside the agent root */
/** the agent bundled into one module (scripts/bundle-agent.mjs): far fewer file loads through gVisor's gofer */
export const AGENT_ENTRY = 'agent/packages/agent/dist/agent.bundle.mjs';
/** the agent's static process starter (packages/agent/native/den-spawn.c), when it was built */
export const SPAWNER_ENTRY = 'agent/packages/agent/dist/den-spawn';
/** path of the runsc OOM guard (oom-guard.ts) inside the agent root */
export const OOM_GUARD_ENTRY = 'guard/oom-guard.mjs';

/**
 * tini is PID 1: it reaps orphans (`-s` also makes it a subreaper when it is not PID 1) and forwards signals to the
 * agent's whole process group (`-g`). The agent runs on the host's Node binary through its own dynamic loader and
 * libraries, so it starts in any image (glibc, musl, no Node installed) without touching the image.
 */
export function agentArgs(options: { oomGuard: boolean }): string[] {
  return [
    `${AGENT_MOUNT}/bin/tini`,
    '-s',
    '-g',
    '--',
    `${AGENT_MOUNT}/lib/ld-linux-x86-64.so.2`,
    '--library-path',
    `${AGENT_MOUNT}/lib`,
    `${AGENT_MOUNT}/bin/node`,
    // runsc only: the OOM guard (oom-guard.ts) runs inside the agent's process, costing no extra process memory.
    ...(options.oomGuard ? ['--import', `${AGENT_MOUNT}/${OOM_GUARD_ENTRY}`] : []),
    `${AGENT_MOUNT}/${AGENT_ENTRY}`,
  ];
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Capabilities of the agent (root). The agent runs every command as the requested user (uid 1000 by default):
 * CAP_SETUID/CAP_SETGID to switch user and supplementary groups; CAP_CHOWN, CAP_FOWNER, CAP_FSETID to create and
 * hand over files for that user (file API, uploads) and keep setgid bits; CAP_DAC_OVERRIDE because root must be
 * able to write into directories owned by uid 1000 (RUNTIME-NOTES: the runtimes' default set lacks it); CAP_KILL to
 * signal processes of other users; CAP_NET_BIND_SERVICE so servers can bind ports below 1024; CAP_SETPCAP so the
 * agent can drop capabilities from the bounding set of what it starts; CAP_AUDIT_WRITE for sudo/login PAM.
 * Not granted, among others: CAP_SYS_ADMIN (mount, namespaces), CAP_NET_ADMIN/CAP_NET_RAW (packet forging),
 * CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_MKNOD, CAP_SYS_CHROOT. Processes switched to uid 1000 have no capabilities.
 */
export const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_NET_BIND_SERVICE',
  'CAP_SETPCAP',
  'CAP_AUDIT_WRITE',
] as const;

/** Docker's default masked paths: kernel memory, keys and timing side channels of the host. */
export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/sys/devices/virtual/powercap',
  '/sys/firmware',
];

/** Docker's default read-only paths: kernel tunables and triggers. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * runsc: the host memory cgroup limit is the sandbox's memory plus this, for the sentry's and gofer's own memory
 * (~15-25 MiB measured) and the OOM guard's reaction time; the guard keeps guest memory under the sandbox's memory.
 */
export const RUNSC_MEMORY_OVERHEAD_MB = 64;

/** CFS period in microseconds; the quota is cpus times this. */
export const CPU_PERIOD_US = 100_000;

/**
 * Host pids cgroup limit for runsc, as a multiple of the sandbox's process limit. gVisor crashes when its pids
 * cgroup is exhausted (RUNTIME-NOTES: each guest process costs several host threads), so runsc enforces the sandbox's
 * process count with RLIMIT_NPROC inside the sentry and the cgroup is only a backstop for the host.
 */
export const RUNSC_PIDS_BACKSTOP_FACTOR = 8;
export const RUNSC_PIDS_BACKSTOP_MIN = 1024;

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciSeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface OciSeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[];
}

export interface OciSeccomp {
  defaultAction: string;
  architectures: string[];
  syscalls: OciSeccompRule[];
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath: string;
    resources: {
      devices?: { allow: boolean; access: string; type?: string; major?: number; minor?: number }[];
      memory?: { limit: number; swap?: number };
      cpu?: { quota: number; period: number };
      pids?: { limit: number };
    };
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: OciSeccomp;
  };
}

/** The cgroup path (relative to each controller's root) of a container; `runc`/`runsc` create and remove it. */
export function cgroupPath(id: string): string {
  return `/den/${id}`;
}

export interface SpecOptions {
  /**
   * The daemon's own RLIMIT_NOFILE hard limit. runc sets rlimits with the host kernel, and without CAP_SYS_RESOURCE
   * a hard limit cannot be raised above the caller's, so runc's hard limit is capped by it. runsc's rlimits live in
   * the sentry and are not capped.
   */
  hostNofileHard?: number;
}

/** RLIMIT_NOFILE inside: the usual Linux default (soft 1024 for select(2) users, hard 524288 for those that raise). */
export const NOFILE_SOFT = 1024;
export const NOFILE_HARD = 524288;

/** Builds the OCI spec of a sandbox container for one runtime. Pure: no I/O. */
export function buildSpec(config: ContainerConfig, runtime: RuntimeName, options: SpecOptions = {}): OciSpec {
  const runsc = runtime === 'runsc';
  const memoryBytes = config.memoryMB * 1024 * 1024;
  const hostMemoryBytes = (config.memoryMB + (runsc ? RUNSC_MEMORY_OVERHEAD_MB : 0)) * 1024 * 1024;
  const caps = [...CAPABILITIES];

  const env = new Map<string, string>();
  env.set('PATH', DEFAULT_PATH.slice('PATH='.length));
  for (const [k, v] of Object.entries(config.env)) env.set(k, v);
  env.set('DEN_AGENT_SOCKET', AGENT_SOCKET);
  // The agent checks that it exists (a build without a C compiler has none) and forks itself otherwise.
  env.set('DEN_SPAWNER', `${AGENT_MOUNT}/${SPAWNER_ENTRY}`);
  if (runsc) env.set('DEN_OOM_GUARD_MB', String(config.memoryMB));

  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755', 'size=65536k'] },
    // After /run: a mount on /run would hide it otherwise. The agent creates agent.sock here; the daemon connects to
    // the socket file in the host directory (runsc needs --host-uds=create for that).
    {
      destination: AGENT_SOCKET_DIR,
      type: 'bind',
      source: config.socketDir,
      options: ['rbind', 'rw', 'nosuid', 'nodev', 'noexec'],
    },
    {
      destination: AGENT_MOUNT,
      type: 'bind',
      source: config.agentRootDir,
      options: ['rbind', 'ro', 'nosuid', 'nodev'],
    },
  ];
  for (const f of config.files ?? []) {
    mounts.push({
      destination: f.destination,
      type: 'bind',
      source: f.source,
      options: ['rbind', 'ro', 'nosuid', 'nodev'],
    });
  }
  if (runsc) {
    // runsc mounts a sandbox-internal tmpfs over an empty /tmp unless the spec mounts /tmp itself (runsc/boot/vfs.go
    // mountTmp). den keeps /tmp on the sandbox's persistent disk like every other directory, so it is bound here.
    // A side effect: rename(2) between /tmp and the rest of the root returns EXDEV, as with a tmpfs /tmp.
    mounts.push({ destination: '/tmp', type: 'bind', source: join(config.rootfsDir, 'tmp'), options: ['rbind', 'rw'] });
  }

  const nofileHard = runsc ? NOFILE_HARD : Math.min(NOFILE_HARD, options.hostNofileHard ?? NOFILE_HARD);
  const rlimits = [{ type: 'RLIMIT_NOFILE', soft: Math.min(NOFILE_SOFT, nofileHard), hard: nofileHard }];
  if (runsc) {
    // The sentry counts RLIMIT_NPROC per user inside the sandbox, so it bounds a fork bomb without touching the host
    // pids cgroup (which crashes gVisor when exhausted). Under runc it would count the same uid across the whole host,
    // so runc uses the pids cgroup instead.
    rlimits.push({ type: 'RLIMIT_NPROC', soft: config.pids, hard: config.pids });
  }

  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
    config.netnsPath ? { type: 'network', path: config.netnsPath } : { type: 'network' },
  ];
  // runc: hide the host's cgroup paths. runsc's sentry has its own cgroupfs and ignores it.
  if (!runsc) namespaces.push({ type: 'cgroup' });

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      // Root inside: the agent switches to the image's user (uid 1000 "user" in base) for every command it runs.
      user: { uid: 0, gid: 0 },
      args: agentArgs({ oomGuard: runsc }),
      env: [...env].map(([k, v]) => `${k}=${v}`),
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [] },
      rlimits,
      // runc: the host kernel is the boundary, so setuid binaries must not gain privileges. runsc: the sentry is the
      // boundary and guest root is root only inside it, so den asks for setuid binaries (`sudo`) to work. runsc
      // 0.0~20240729.0 ignores this and always sets PR_SET_NO_NEW_PRIVS (it says so: "noNewPrivileges ignored.
      // PR_SET_NO_NEW_PRIVS is assumed to always be set"; verified: prctl(PR_GET_NO_NEW_PRIVS) is 1 and sudo refuses
      // to run), so until gVisor honours it, root commands go through the agent's `user: "root"`.
      noNewPrivileges: !runsc,
    },
    root: { path: config.rootfsDir, readonly: false },
    hostname: config.hostname,
    mounts,
    linux: {
      namespaces,
      cgroupsPath: cgroupPath(config.id),
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        // runc: the kernel OOM-kills the largest process of the cgroup at the limit (the hog, not the agent); swap
        // equal to the limit means no swap on top (memory.memsw under cgroup v1). runsc: RUNSC_MEMORY_OVERHEAD_MB.
        memory: runsc ? { limit: hostMemoryBytes } : { limit: memoryBytes, swap: memoryBytes },
        cpu: { quota: Math.max(1000, Math.round(config.cpus * CPU_PERIOD_US)), period: CPU_PERIOD_US },
        pids: {
          limit: runsc ? Math.max(RUNSC_PIDS_BACKSTOP_MIN, config.pids * RUNSC_PIDS_BACKSTOP_FACTOR) : config.pids,
        },
      },
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
  // runsc: the sentry implements syscalls itself and filters its own host syscalls; an OCI seccomp profile is
  // ignored unless --oci-seccomp is set. runc: a deny-list on top of the dropped capabilities.
  if (!runsc) spec.linux.seccomp = runcSeccomp();
  return spec;
}

const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;

/**
 * Seccomp for runc: allow by default, deny what a container never needs and what widens the host kernel's attack
 * surface. This is narrower than Docker's allow-list profile; it blocks the usual escape and exploit paths:
 * - user namespaces (`clone`/`unshare` with CLONE_NEWUSER): they hand an unprivileged process full capabilities over
 *   new namespaces and expose kernel code paths behind many local privilege escalations;
 * - `clone3` returns ENOSYS (its flags are in memory seccomp cannot read), so libc falls back to `clone`;
 * - io_uring, bpf, perf_event_open, userfaultfd, keyctl: large kernel surfaces with a history of exploits;
 * - module, kexec, reboot, swap, clock, quota, accounting, mount API and handle-based open calls.
 */
export function runcSeccomp(): OciSeccomp {
  const denied = [
    'acct',
    'add_key',
    'bpf',
    'clock_adjtime',
    'clock_settime',
    'create_module',
    'delete_module',
    'finit_module',
    'fsconfig',
    'fsmount',
    'fsopen',
    'fspick',
    'get_kernel_syms',
    'init_module',
    'io_uring_enter',
    'io_uring_register',
    'io_uring_setup',
    'ioperm',
    'iopl',
    'kexec_file_load',
    'kexec_load',
    'keyctl',
    'lookup_dcookie',
    'mount',
    'mount_setattr',
    'move_mount',
    'name_to_handle_at',
    'nfsservctl',
    'open_by_handle_at',
    'open_tree',
    'perf_event_open',
    'pivot_root',
    'quotactl',
    'quotactl_fd',
    'reboot',
    'request_key',
    'setns',
    'settimeofday',
    'stime',
    'swapoff',
    'swapon',
    'sysfs',
    '_sysctl',
    'syslog',
    'umount',
    'umount2',
    'uselib',
    'userfaultfd',
    'ustat',
    'vm86',
    'vm86old',
  ];
  const newUser = [{ index: 0, value: CLONE_NEWUSER, valueTwo: CLONE_NEWUSER, op: 'SCMP_CMP_MASKED_EQ' }];
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: denied, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      { names: ['clone', 'unshare'], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM, args: newUser },
    ],
  };
}
