/**
 * The ports the services depend on. Adapters (runtime/, storage/, store/, the agent client) implement them;
 * services and routes only ever see these interfaces. Every operation that changes the machine is idempotent,
 * because the reconcile loop repeats steps after a crash.
 */
import type { Readable } from 'node:stream';
import type { AgentClient } from '@den/agent/client';
import type { Image, NetworkPolicyName, RuntimeName, SandboxState } from '@den/shared';

export type { NetworkPolicyName, RuntimeName, SandboxState };

/** What a runtime needs to start one sandbox container. All paths are on the host. */
export interface ContainerConfig {
  /** container id = sandbox id (fixed length, see ids.ts) */
  id: string;
  /** the mounted overlay root (RootfsManager.mount) */
  rootfsDir: string;
  /** directory the runtime adapter writes config.json into */
  bundleDir: string;
  /** host directory bind-mounted read-only at /.den (node, its libraries, tini, the agent) */
  agentRootDir: string;
  /** host directory bind-mounted read-write at /run/den; the agent listens on /run/den/agent.sock there */
  socketDir: string;
  /** the agent's stdout/stderr go to this host file (the container must not hold the daemon's pipes) */
  logFile: string;
  hostname: string;
  /** environment of the agent; it passes it on to every process */
  env: Record<string, string>;
  cpus: number;
  memoryMB: number;
  /** process limit inside the sandbox (RLIMIT_NPROC for runsc, pids cgroup for runc) */
  pids: number;
  /** the sandbox's network namespace (NetworkManager.setUp); absent: a new namespace with loopback only */
  netnsPath?: string;
  /** host files or directories bind-mounted read-only (/etc/resolv.conf, /etc/hosts, the package cache) */
  files?: { source: string; destination: string }[];
}

export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerState {
  id: string;
  status: ContainerStatus;
  /** host pid of the container's init (runc) or sandbox process (runsc); 0 when stopped */
  pid: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** One OCI runtime driven as a binary. */
export interface Runtime {
  readonly name: RuntimeName;
  /** version string, or throws RUNTIME_UNAVAILABLE when the binary is missing */
  version(): Promise<string>;
  /**
   * Writes the bundle, creates and starts the container detached (it outlives the daemon); with `restoreFrom`, the
   * container starts from a checkpoint image instead (same config as when it was checkpointed). `removed`: the caller
   * has just deleted any container of this id, so the runtime need not look for one first.
   */
  run(config: ContainerConfig, opts?: { restoreFrom?: string; removed?: boolean }): Promise<void>;
  /** true when `checkpoint` can save a running container's memory (runsc; runc's CRIU fails on these kernels) */
  readonly canCheckpoint: boolean;
  /** saves the container's memory and process state into `imageDir`; the container is gone afterwards */
  checkpoint(id: string, imageDir: string): Promise<void>;
  /** undefined when the runtime does not know the container */
  state(id: string): Promise<ContainerState | undefined>;
  /** every container in den's state root for this runtime */
  list(): Promise<ContainerState[]>;
  /**
   * Freezes every process of the container (cgroup freezer: `runc pause`) / lets them continue; for a consistent
   * copy of its files while it runs. Not for runsc, whose sentry caches file data the freezer does not flush.
   */
  freeze(id: string): Promise<void>;
  thaw(id: string): Promise<void>;
  /** sends a signal to the container's init; no error when it is already gone */
  kill(id: string, signal?: string): Promise<void>;
  /** stops (SIGKILL) and removes the container and its runtime state; no error when it does not exist */
  delete(id: string): Promise<void>;
  /** the runtime's own `exec` (no agent): the raw baseline for benchmarks and a debugging aid */
  exec(id: string, args: string[]): Promise<ExecResult>;
}

/** A sandbox's root filesystem: a persistent disk with a real size limit, and an overlay over the image layers. */
export interface RootfsManager {
  /** creates the sandbox's disk (a sparse ext4 file of diskMB) if it does not exist */
  ensureDisk(sandboxId: string, diskMB: number): Promise<void>;
  /** mounts the disk and the overlay (lower = the image's layer dirs, top first); returns the rootfs path */
  mount(sandboxId: string, layerDirs: string[]): Promise<string>;
  /** mounts the disk alone and returns the overlay upper dir's path on it (which may not exist yet) */
  mountDisk(sandboxId: string): Promise<string>;
  /** unmounts the overlay and the disk and detaches its loop device; no error when not mounted */
  unmount(sandboxId: string): Promise<void>;
  /** unmount plus removal of the disk and every directory of the sandbox */
  destroy(sandboxId: string): Promise<void>;
  /** sandbox ids that have a directory on disk (for the reconcile loop to find strays) */
  listOnDisk(): Promise<string[]>;
}

/** The persisted desired + observed state of one sandbox. */
export interface SandboxRecord {
  id: string;
  name: string | null;
  image: string;
  runtime: RuntimeName;
  state: SandboxState;
  desiredState: DesiredState;
  cpus: number;
  memoryMB: number;
  diskMB: number;
  pids: number;
  env: Record<string, string>;
  metadata: Record<string, string>;
  createdAt: string;
  startedAt: string | null;
  lastError: string | null;
  /** IPv4 address on den's bridge, allocated at create and kept until the sandbox is removed */
  address: string | null;
  network: NetworkPolicy;
  previewPublic: boolean;
  /** secret for private previews */
  previewToken: string;
  /** when onTimeout runs (ISO-8601 UTC); null = no timeout. Counts only while the sandbox should run. */
  timeoutAt: string | null;
  /** what happens at timeoutAt */
  onTimeout: 'delete' | 'stop' | 'pause';
  /** E2B API: secret envd calls must carry in X-Access-Token; null = no token needed */
  envdAccessToken: string | null;
  /** while paused: how (memory saved or filesystem only) */
  pause: PauseInfo | null;
  /** waiting unassigned in the warm pool: invisible to the API until a create takes it */
  pooled: boolean;
  /** pause after this many ms without activity; null = never */
  idleTimeoutMs: number | null;
  /** last activity seen (ISO-8601 UTC), saved every few seconds while the sandbox is used */
  lastActivityAt: string | null;
}

export interface PauseInfo {
  /** true: processes resume where they were (runsc checkpoint); false: only the filesystem was kept */
  memory: boolean;
  /** why memory was not saved (runc, or the checkpoint failed) */
  reason: string | null;
  at: string;
}

/** A sandbox's egress policy; `allow` holds normalized CIDRs and domain patterns (allowlist only). */
export interface NetworkPolicy {
  policy: NetworkPolicyName;
  allow: string[];
}

export interface SandboxNetworkSpec {
  sandboxId: string;
  address: string;
  hostname: string;
  network: NetworkPolicy;
}

/** What a runtime needs to put a sandbox into its network (ContainerConfig.netnsPath and .files). */
export interface SandboxNetworkAttachment {
  netnsPath: string;
  files: { source: string; destination: string }[];
}

/**
 * Sandbox networking: a namespace per sandbox on den's bridge, egress policy, DNS. All steps are idempotent.
 * A stopped sandbox holds no kernel network objects; its address stays allocated in its record.
 */
export interface NetworkManager {
  /** checks and normalizes a policy from a request; throws INVALID_ARGUMENT naming the bad entry */
  normalize(settings: { policy: NetworkPolicyName; allow?: string[] }): NetworkPolicy;
  /** the lowest free address, given those in use; throws RESOURCE_EXHAUSTED when the subnet is full */
  allocateAddress(inUse: Iterable<string>): string;
  /** (re)creates the namespace, veth, address, routes and rules; call before every container start */
  setUp(spec: SandboxNetworkSpec): Promise<SandboxNetworkAttachment>;
  /**
   * for a namespace still in place (a sandbox restored a moment after its pause, or booted fresh after its restore
   * failed): puts back what the runtime took out of it (address, routes); sets everything up anew when it is not
   * complete
   */
  reattach(spec: SandboxNetworkSpec): Promise<SandboxNetworkAttachment>;
  /** (re)applies rules and the resolver's view for a sandbox that is already running (after a daemon restart) */
  adopt(spec: SandboxNetworkSpec): Promise<void>;
  /** changes the egress policy of a sandbox, running or not */
  updatePolicy(spec: SandboxNetworkSpec): Promise<void>;
  /** removes namespace, veth and rules; no error when already gone */
  tearDown(sandboxId: string, address: string | null): Promise<void>;
  /** sandbox ids that have a namespace of this daemon on the machine (for the reconcile loop to find strays) */
  listOnMachine(): Promise<string[]>;
}

export type DesiredState = 'running' | 'stopped' | 'paused' | 'deleted';

/** State database of sandboxes (SQLite or PostgreSQL behind one implementation). */
export interface SandboxStore {
  /** throws DenError NAME_TAKEN when the name is in use */
  insert(record: SandboxRecord): Promise<void>;
  get(id: string): Promise<SandboxRecord | undefined>;
  getByName(name: string): Promise<SandboxRecord | undefined>;
  list(filter?: { state?: SandboxState }): Promise<SandboxRecord[]>;
  update(id: string, patch: Partial<Omit<SandboxRecord, 'id' | 'createdAt'>>): Promise<SandboxRecord | undefined>;
  delete(id: string): Promise<void>;
  countByState(): Promise<Record<string, number>>;
  /** sandboxes meant to run whose timeoutAt is at or before `now` (ISO-8601 UTC), oldest first */
  listExpired(now: string): Promise<SandboxRecord[]>;
}

/** A stored API key: its SHA-256, never the key. */
export interface ApiKeyRecord {
  name: string;
  /** SHA-256 of the key, hex */
  keyHash: string;
  createdAt: string;
  lastUsedAt: string | null;
}

/** State database of API keys (SQLite or PostgreSQL behind one implementation). */
export interface ApiKeyStore {
  /** throws DenError API_KEY_EXISTS when the name is taken */
  insert(record: ApiKeyRecord): Promise<void>;
  list(): Promise<ApiKeyRecord[]>;
  getByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  /** false when there was no key of that name */
  delete(name: string): Promise<boolean>;
  touch(name: string, lastUsedAt: string): Promise<void>;
}

/** Images (templates) known to this daemon. */
export interface ImageCatalog {
  /** throws DenError IMAGE_NOT_FOUND naming the available images */
  get(name: string): Promise<Image>;
  list(): Promise<Image[]>;
  /** host directories of the image's layers, top layer first (overlay lowerdir order) */
  layerDirs(image: Image): string[];
  /** a new image: `base` plus `upperDir` (a sandbox's files) as its top layer; IMAGE_EXISTS when the name is taken */
  create(name: string, base: Image, upperDir: string, origin: Record<string, string>): Promise<Image>;
  /** removes the image and the layers no other image uses */
  remove(name: string): Promise<void>;
}

/** What an object store knows about one stored object. */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

/**
 * A flat key -> bytes store shared by daemons on several machines (snapshots travel through it): a local directory
 * or an S3-compatible bucket. Keys are `/`-separated relative paths (no empty, `.` or `..` segment, no leading or
 * trailing `/`); a bad key is INVALID_ARGUMENT. An object is visible only once completely written.
 */
export interface ObjectStore {
  /** where the objects are, for logs and messages (e.g. `file:///var/lib/den/objects`, `s3://bucket/prefix/`) */
  readonly location: string;
  /**
   * Streams `body` into the object `key` (replacing it), hashing while it uploads. When `body` fails midway no
   * object (and no partial one) becomes visible. `contentLength`, when given, must match the bytes read.
   */
  put(key: string, body: Readable, opts?: { contentLength?: number }): Promise<{ size: number; sha256: string }>;
  /** the object's bytes as a stream; OBJECT_NOT_FOUND when there is no such object */
  get(key: string): Promise<Readable>;
  /** undefined when there is no such object */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** every object whose key starts with `prefix` (a plain string prefix, '' = all), sorted by key */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** no error when the object does not exist */
  delete(key: string): Promise<void>;
  /** deletes every object whose key starts with `prefix` (non-empty); returns how many were deleted */
  deletePrefix(prefix: string): Promise<number>;
  /** releases connections (S3); the store is not used afterwards */
  close(): Promise<void>;
}

/**
 * The connection to one sandbox's agent. Its protocol is owned by packages/agent (the client there implements
 * it); services and routes depend on this type, not on how it is implemented.
 */
export type AgentConnection = AgentClient;
/** Connects to the agent of sandbox `sandboxId` at `socketPath`. */
export type AgentConnector = (socketPath: string, sandboxId: string) => AgentConnection;

export interface SnapshotPart {
  /** 'upper', or 'extra/<name>' */
  name: string;
  key: string;
  /** how the part is encoded; the only one so far */
  encoding: 'tar+zstd';
  /** bytes stored (compressed) */
  size: number;
  /** SHA-256 of the stored bytes, lowercase hex */
  sha256: string;
  /** ISO-8601 UTC */
  createdAt: string;
}

export interface SnapshotManifest {
  /** 'den-snapshot/1' */
  format: 'den-snapshot/1';
  /** the key prefix the snapshot lives under */
  prefix: string;
  createdAt: string;
  /** where it came from: the caller's fields (sandbox id, image, runtime, ...) plus the writer's hostname */
  source: Record<string, string>;
  parts: SnapshotPart[];
}

export interface WriteSnapshotOptions {
  /** key prefix of the new snapshot, e.g. `snapshots/<id>`; it must not hold a snapshot yet */
  prefix: string;
  /** the directory to archive: the sandbox's overlay upper dir (stopped or paused, so it does not change) */
  upperDir: string;
  /** extra directories stored as their own parts, e.g. `{ name: 'memory', dir: <runsc checkpoint image dir> }` */
  extras?: { name: string; dir: string }[];
  source?: Record<string, string>;
}

export interface RestoreSnapshotOptions {
  /** where the upper dir is restored to */
  upperDir: string;
  /** extras are restored to `<extrasDir>/<name>`; without it they are not read at all (a filesystem-only restore) */
  extrasDir?: string;
  /** replace targets that exist (only after every part verified); without it an existing target is FILE_EXISTS */
  replace?: boolean;
}

/** Snapshots of a directory tree (plus extra directories) in the object store, verified when restored. */
export interface SnapshotArchiver {
  /** archives the upper dir and extras; the manifest is written last */
  write(opts: WriteSnapshotOptions): Promise<SnapshotManifest>;
  /** OBJECT_NOT_FOUND when there is no snapshot at `prefix` */
  manifest(prefix: string): Promise<SnapshotManifest>;
  /** stages and verifies every part, then moves them into place; SNAPSHOT_CORRUPT leaves the targets untouched */
  restore(prefix: string, opts: RestoreSnapshotOptions): Promise<SnapshotManifest>;
}
