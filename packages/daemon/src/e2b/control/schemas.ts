import { type Static, Type } from '@sinclair/typebox';

/**
 * Request schemas of E2B's control API as the `e2b` SDK (2.51) sends them (field names from E2B's OpenAPI
 * document, spec/openapi.yml in e2b-dev/infra). Objects allow unknown fields: E2B adds fields over time and a
 * newer SDK must not get 400 for an option it merely sends as `undefined`-free defaults. Fields den cannot honour
 * are rejected by the mapping with a message naming them, never dropped silently.
 */

const EnvVars = Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), {
  additionalProperties: false,
});
const Metadata = Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }));
/** E2B's Timeout: seconds, int32 */
const TimeoutSeconds = Type.Integer({ minimum: 0, maximum: 2_147_483_647 });

export const E2BNetworkConfig = Type.Object({
  allowOut: Type.Optional(Type.Array(Type.String())),
  denyOut: Type.Optional(Type.Array(Type.String())),
  allowPublicTraffic: Type.Optional(Type.Boolean()),
  maskRequestHost: Type.Optional(Type.String()),
  httpsPorts: Type.Optional(Type.Array(Type.Integer())),
  rules: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  egressProxy: Type.Optional(Type.Unknown()),
});
export type E2BNetworkConfig = Static<typeof E2BNetworkConfig>;

/** `POST /v2/sandboxes` (NewSandboxV2) and the deprecated `POST /sandboxes` (NewSandbox, which adds `secure`). */
export const E2BNewSandbox = Type.Object({
  templateID: Type.String({ minLength: 1, maxLength: 256 }),
  timeout: Type.Optional(TimeoutSeconds),
  metadata: Type.Optional(Metadata),
  envVars: Type.Optional(EnvVars),
  allow_internet_access: Type.Optional(Type.Boolean()),
  network: Type.Optional(E2BNetworkConfig),
  autoPause: Type.Optional(Type.Boolean()),
  autoPauseMemory: Type.Optional(Type.Boolean()),
  autoResume: Type.Optional(Type.Object({ enabled: Type.Boolean() })),
  secure: Type.Optional(Type.Boolean()),
  volumeMounts: Type.Optional(Type.Array(Type.Unknown())),
  iam: Type.Optional(Type.Unknown()),
  mcp: Type.Optional(Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()])),
});
export type E2BNewSandbox = Static<typeof E2BNewSandbox>;

/** `POST /v2/sandboxes/{id}/connect` (optional body), `/sandboxes/{id}/connect` and `/resume`. */
export const E2BConnectSandbox = Type.Object({
  timeout: Type.Optional(TimeoutSeconds),
  memory: Type.Optional(Type.Boolean()),
  autoPause: Type.Optional(Type.Boolean()),
});
export type E2BConnectSandbox = Static<typeof E2BConnectSandbox>;

export const E2BSetTimeout = Type.Object({ timeout: TimeoutSeconds });
export type E2BSetTimeout = Static<typeof E2BSetTimeout>;

export const E2BPauseRequest = Type.Object({ memory: Type.Optional(Type.Boolean()) });

export const E2BNetworkUpdate = Type.Object({
  allow_internet_access: Type.Optional(Type.Boolean()),
  allowOut: Type.Optional(Type.Array(Type.String())),
  denyOut: Type.Optional(Type.Array(Type.String())),
  rules: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  egressProxy: Type.Optional(Type.Unknown()),
});
export type E2BNetworkUpdate = Static<typeof E2BNetworkUpdate>;

export const E2BSandboxParams = Type.Object({ sandboxID: Type.String({ minLength: 1, maxLength: 64 }) });
export type E2BSandboxParams = Static<typeof E2BSandboxParams>;

/**
 * `GET /v2/sandboxes`. `state` is an array sent comma-separated (`state=running,paused`, openapi-fetch's
 * form/explode=false), so it arrives as one string and is split by the route.
 */
export const E2BListQuery = Type.Object({
  metadata: Type.Optional(Type.String()),
  state: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  nextToken: Type.Optional(Type.String()),
  order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
  startedAfter: Type.Optional(Type.String({ format: 'date-time' })),
  template: Type.Optional(Type.String()),
});
export type E2BListQuery = Static<typeof E2BListQuery>;

export const E2BMetricsQuery = Type.Object({
  start: Type.Optional(Type.Integer({ minimum: 0 })),
  end: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type E2BMetricsQuery = Static<typeof E2BMetricsQuery>;
