import { type Static, Type } from '@sinclair/typebox';
import { SANDBOX_NAME_PATTERN } from './ids.js';

/**
 * Schemas of den's native REST API v1. The daemon validates requests with them and generates its OpenAPI document
 * from them; the SDK uses the static types.
 */

export const RuntimeName = Type.Union([Type.Literal('runsc'), Type.Literal('runc')], {
  description: 'OCI runtime: runsc (gVisor, default, strong isolation) or runc (faster, weaker isolation)',
});
export type RuntimeName = Static<typeof RuntimeName>;

export const SandboxState = Type.Union(
  [
    Type.Literal('creating'),
    Type.Literal('starting'),
    Type.Literal('running'),
    Type.Literal('stopping'),
    Type.Literal('stopped'),
    Type.Literal('deleting'),
    Type.Literal('pausing'),
    Type.Literal('paused'),
    Type.Literal('error'),
  ],
  { description: 'observed state of the sandbox' },
);
export type SandboxState = Static<typeof SandboxState>;

export const LIMITS = {
  cpus: { min: 0.1, max: 64, default: 1 },
  memoryMB: { min: 64, max: 65536, default: 1024 },
  diskMB: { min: 64, max: 1048576, default: 4096 },
  pids: { min: 16, max: 32768, default: 4096 },
} as const;

const EnvMap = Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), {
  description: 'environment variables for every process in the sandbox; names are [A-Za-z_][A-Za-z0-9_]*',
  // Without this, keys that do not match the name pattern would be accepted silently.
  additionalProperties: false,
});
const Metadata = Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }), {
  description: 'free-form labels, returned as given and usable as list filters',
});

export const NetworkPolicyName = Type.Union([Type.Literal('none'), Type.Literal('allowlist'), Type.Literal('full')], {
  description:
    'egress policy: none (no traffic out; previews still reach the sandbox), allowlist (only the CIDRs and domain ' +
    'names in `allow`), full (anything but other sandboxes, the host and 169.254.0.0/16)',
});
export type NetworkPolicyName = Static<typeof NetworkPolicyName>;

export const NetworkSettings = Type.Object(
  {
    policy: NetworkPolicyName,
    allow: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
        maxItems: 256,
        description:
          'for allowlist: IPv4 addresses or CIDRs (10.0.0.0/8) and domain names (example.com, *.example.com)',
      }),
    ),
  },
  { additionalProperties: false },
);
export type NetworkSettings = Static<typeof NetworkSettings>;

export const PreviewSettings = Type.Object(
  {
    public: Type.Boolean({
      description: 'true: anyone who can reach den may open the preview URLs; false: they need the preview token',
    }),
  },
  { additionalProperties: false },
);
export type PreviewSettings = Static<typeof PreviewSettings>;

export const OnTimeoutAction = Type.Union([Type.Literal('delete'), Type.Literal('stop'), Type.Literal('pause')], {
  description:
    'what happens when the timeout passes: delete (the sandbox and its files), stop (files kept; start it again ' +
    'later) or pause (memory kept too on runsc; any request resumes it)',
});
export type OnTimeoutAction = Static<typeof OnTimeoutAction>;

/** Longest sandbox timeout: 30 days (a longer-lived sandbox needs no timeout at all: 0). */
export const MAX_SANDBOX_TIMEOUT_MS = 30 * 24 * 3600 * 1000;

const TimeoutMs = Type.Integer({
  minimum: 0,
  maximum: MAX_SANDBOX_TIMEOUT_MS,
  description: 'milliseconds from now after which the onTimeout action runs; 0 = no timeout',
});

const IdleTimeoutMs = Type.Integer({
  minimum: 0,
  maximum: MAX_SANDBOX_TIMEOUT_MS,
  description:
    'pause the sandbox after this many ms without activity (preview traffic, exec/PTY sessions, file calls, CPU ' +
    'use inside); the next request wakes it. 0 = never',
});

export const SetTimeoutRequest = Type.Object({ timeoutMs: TimeoutMs }, { additionalProperties: false });
export type SetTimeoutRequest = Static<typeof SetTimeoutRequest>;

export const LifecycleRequest = Type.Object(
  { idleTimeoutMs: Type.Optional(IdleTimeoutMs), onTimeout: Type.Optional(OnTimeoutAction) },
  { additionalProperties: false, minProperties: 1 },
);
export type LifecycleRequest = Static<typeof LifecycleRequest>;

export const CreateSandboxRequest = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: SANDBOX_NAME_PATTERN, description: 'unique name (DNS label)' })),
    image: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'image name; default "base"' })),
    runtime: Type.Optional(RuntimeName),
    cpus: Type.Optional(Type.Number({ minimum: LIMITS.cpus.min, maximum: LIMITS.cpus.max })),
    memoryMB: Type.Optional(Type.Integer({ minimum: LIMITS.memoryMB.min, maximum: LIMITS.memoryMB.max })),
    diskMB: Type.Optional(Type.Integer({ minimum: LIMITS.diskMB.min, maximum: LIMITS.diskMB.max })),
    pids: Type.Optional(Type.Integer({ minimum: LIMITS.pids.min, maximum: LIMITS.pids.max })),
    env: Type.Optional(EnvMap),
    metadata: Type.Optional(Metadata),
    network: Type.Optional(NetworkSettings),
    preview: Type.Optional(PreviewSettings),
    timeoutMs: Type.Optional(TimeoutMs),
    onTimeout: Type.Optional(OnTimeoutAction),
    idleTimeoutMs: Type.Optional(IdleTimeoutMs),
    fromSnapshot: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        description:
          'snapshot id or name: the new sandbox starts with its files (and its processes, when it holds memory); ' +
          'image and runtime come from the snapshot, limits too unless given',
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreateSandboxRequest = Static<typeof CreateSandboxRequest>;

export const Sandbox = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  image: Type.String(),
  runtime: RuntimeName,
  state: SandboxState,
  /** desired state the reconcile loop drives toward */
  desiredState: Type.Union([
    Type.Literal('running'),
    Type.Literal('stopped'),
    Type.Literal('paused'),
    Type.Literal('deleted'),
  ]),
  /**
   * set while paused: whether memory was saved (runsc checkpoint) or only the filesystem; `reason` says why not, or,
   * with memory saved, which outside TCP connections the pause closed (null when none)
   */
  pause: Type.Union([
    Type.Object({ memory: Type.Boolean(), reason: Type.Union([Type.String(), Type.Null()]), at: Type.String() }),
    Type.Null(),
  ]),
  cpus: Type.Number(),
  memoryMB: Type.Integer(),
  diskMB: Type.Integer(),
  pids: Type.Integer(),
  env: EnvMap,
  metadata: Metadata,
  network: Type.Object({
    policy: NetworkPolicyName,
    allow: Type.Array(Type.String()),
    /** the sandbox's IPv4 address on den's bridge (reachable from the host only) */
    address: Type.Union([Type.String(), Type.Null()]),
  }),
  preview: Type.Object({
    public: Type.Boolean(),
    /** send as header X-Den-Preview-Token, query den_preview_token or (set by den) cookie, unless public */
    token: Type.String(),
    /** preview hosts are `<port>-<sandbox id>.<domain>`; the domain includes den's port when it is not 80 */
    domain: Type.String(),
  }),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastError: Type.Union([Type.String(), Type.Null()]),
  /** when the onTimeout action runs; null = no timeout. A timeout counts only while the sandbox runs. */
  timeoutAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  onTimeout: OnTimeoutAction,
  /** pause after this long without activity; null = never */
  idleTimeoutMs: Type.Union([Type.Integer(), Type.Null()]),
  /** the last activity den saw (requests, sessions, CPU use), as saved every few seconds; null = none yet */
  lastActivityAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
export type Sandbox = Static<typeof Sandbox>;

export const ListeningPort = Type.Object({
  port: Type.Integer(),
  /** the address the socket is bound to inside the sandbox (0.0.0.0 / :: = every interface) */
  address: Type.String(),
  protocol: Type.Literal('tcp'),
  /** false when bound to loopback only: previews cannot reach it */
  reachable: Type.Boolean(),
  /** preview URLs (host form and path form) */
  urls: Type.Object({ host: Type.String(), path: Type.String() }),
});
export type ListeningPort = Static<typeof ListeningPort>;
export const PortList = Type.Object({ ports: Type.Array(ListeningPort) });
export type PortList = Static<typeof PortList>;

export const SandboxList = Type.Object({ sandboxes: Type.Array(Sandbox) });
export type SandboxList = Static<typeof SandboxList>;

export const SandboxRef = Type.Object({
  ref: Type.String({ minLength: 1, maxLength: 64, description: 'sandbox id or name' }),
});

export const ExecRequest = Type.Object(
  {
    cmd: Type.Array(Type.String(), { minItems: 1, description: 'argv; use ["bash","-lc","..."] for shell syntax' }),
    env: Type.Optional(EnvMap),
    cwd: Type.Optional(Type.String({ minLength: 1 })),
    user: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600 * 1000 })),
    background: Type.Optional(Type.Boolean()),
    tag: Type.Optional(Type.String({ maxLength: 128 })),
    pty: Type.Optional(
      Type.Object({
        cols: Type.Integer({ minimum: 1, maximum: 1000 }),
        rows: Type.Integer({ minimum: 1, maximum: 1000 }),
      }),
    ),
  },
  { additionalProperties: false },
);
export type ExecRequest = Static<typeof ExecRequest>;

export const FilePathQuery = Type.Object({
  path: Type.String({ minLength: 1, description: 'absolute path inside the sandbox' }),
  user: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
});
export const ListQuery = Type.Object({
  path: Type.String({ minLength: 1 }),
  depth: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
  user: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
});
export const MakeDirRequest = Type.Object(
  { path: Type.String({ minLength: 1 }), user: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export const MoveRequest = Type.Object(
  { from: Type.String({ minLength: 1 }), to: Type.String({ minLength: 1 }), user: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const SignalRequest = Type.Object(
  { signal: Type.String({ pattern: '^SIG[A-Z0-9]+$' }) },
  { additionalProperties: false },
);

export const Status = Type.Object({
  version: Type.String(),
  uptimeMs: Type.Integer(),
  runtimes: Type.Array(
    Type.Object({ name: RuntimeName, available: Type.Boolean(), version: Type.Union([Type.String(), Type.Null()]) }),
  ),
  sandboxes: Type.Record(Type.String(), Type.Integer()),
  /** warm pool: booted, unassigned sandboxes ready to be handed out, per "image/runtime" */
  warmPool: Type.Record(Type.String(), Type.Integer()),
  database: Type.String(),
});
export type Status = Static<typeof Status>;

export const CreateSnapshotRequest = Type.Object(
  { name: Type.Optional(Type.String({ pattern: SANDBOX_NAME_PATTERN, description: 'unique snapshot name' })) },
  { additionalProperties: false },
);
export type CreateSnapshotRequest = Static<typeof CreateSnapshotRequest>;

export const Snapshot = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  /** the sandbox it was taken from (it may be gone since) */
  sandboxId: Type.String(),
  sandboxName: Type.Union([Type.String(), Type.Null()]),
  image: Type.String(),
  runtime: RuntimeName,
  cpus: Type.Number(),
  memoryMB: Type.Integer(),
  diskMB: Type.Integer(),
  /** true: processes continue where they were in a sandbox created from it (runsc memory image) */
  memory: Type.Boolean(),
  /** why the memory of the (running) sandbox is not in the snapshot */
  memoryNotSaved: Type.Union([Type.String(), Type.Null()]),
  /** bytes stored (compressed) */
  sizeBytes: Type.Integer(),
  createdAt: Type.String(),
});
export type Snapshot = Static<typeof Snapshot>;
export const SnapshotList = Type.Object({ snapshots: Type.Array(Snapshot) });
export type SnapshotList = Static<typeof SnapshotList>;

export const IMAGE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';

export const CreateImageRequest = Type.Object(
  {
    name: Type.String({ pattern: IMAGE_NAME_PATTERN, description: 'name of the new image' }),
    fromSandbox: Type.String({ minLength: 1, description: 'sandbox id or name whose files become the image' }),
  },
  { additionalProperties: false },
);
export type CreateImageRequest = Static<typeof CreateImageRequest>;

export const Image = Type.Object({
  name: Type.String(),
  layers: Type.Array(Type.String()),
  user: Type.String(),
  workdir: Type.String(),
  env: Type.Array(Type.String()),
  createdAt: Type.String(),
});
export type Image = Static<typeof Image>;

export const ErrorResponse = Type.Object({
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  requestId: Type.Optional(Type.String()),
});

/** Content type of a streamed exec response: a sequence of frames (frames.ts). */
export const FRAMES_CONTENT_TYPE = 'application/vnd.den.frames';

export const AppStartRequest = Type.Object(
  {
    dir: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description: 'project directory in the sandbox; default /home/user/app',
      }),
    ),
    git: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: 'git URL cloned into dir first' })),
    restart: Type.Optional(Type.Boolean({ description: 'restart the dev server den started before, no install' })),
    readyTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 30 * 60_000 })),
  },
  { additionalProperties: false },
);
export type AppStartRequest = Static<typeof AppStartRequest>;

export const AppInfo = Type.Object({
  dir: Type.String(),
  kind: Type.Union([
    Type.Literal('vite'),
    Type.Literal('node'),
    Type.Literal('fastapi'),
    Type.Literal('flask'),
    Type.Literal('python'),
  ]),
  port: Type.Integer(),
  /** the dev server's pid in the sandbox; null when it is not running */
  pid: Type.Union([Type.Integer(), Type.Null()]),
  urls: Type.Object({ host: Type.String(), path: Type.String() }),
});
export type AppInfo = Static<typeof AppInfo>;

/** Names of API keys: letters, digits, '.', '_', '-'; 1-64 characters, starting with a letter or digit. */
export const API_KEY_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';

export const CreateApiKeyRequest = Type.Object(
  {
    name: Type.String({
      pattern: API_KEY_NAME_PATTERN,
      description: "unique name of the key (letters, digits, '.', '_', '-'; up to 64)",
    }),
  },
  { additionalProperties: false },
);
export type CreateApiKeyRequest = Static<typeof CreateApiKeyRequest>;

/** An API key as den shows it: never the key itself (den keeps only its SHA-256). */
export const ApiKey = Type.Object({
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  /** last request authenticated with it (to the minute); null = never used */
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
export type ApiKey = Static<typeof ApiKey>;

/** The answer to creating a key: the only time den returns the key. */
export const CreatedApiKey = Type.Object({
  name: Type.String(),
  /** `den_` + 32 base62 characters; send as X-API-KEY (E2B API) */
  key: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
});
export type CreatedApiKey = Static<typeof CreatedApiKey>;

export const ApiKeyList = Type.Object({ keys: Type.Array(ApiKey) });
export type ApiKeyList = Static<typeof ApiKeyList>;
