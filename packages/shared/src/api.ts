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
  desiredState: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('deleted')]),
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
  database: Type.String(),
});
export type Status = Static<typeof Status>;

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
