import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DenError, type NetworkPolicyName, type RuntimeName } from '@den/shared';
import { DEFAULT_RUNC_BINARY } from './runtime/runc.js';
import { DEFAULT_RUNSC_BINARY } from './runtime/runsc.js';
import { type ObjectStoreConfig, objectStoreFromEnv, resolveObjectStoreConfig } from './storage/object-store/config.js';

/**
 * The daemon's configuration, resolved in one place: defaults < config file (<home>/config.json or --config)
 * < environment (DEN_*) < command-line flags. Units are in the names.
 */
export interface DaemonConfig {
  /** data directory: database, sandboxes, runtime state */
  home: string;
  /** image layers and manifests (content-addressed; may be shared by several daemons) */
  store: string;
  host: string;
  port: number;
  /** PostgreSQL URL; when absent the embedded SQLite file <home>/den.db is used */
  databaseUrl: string | undefined;
  defaultRuntime: RuntimeName;
  runscPath: string;
  runcPath: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** how often the reconcile loop compares the database with the runtimes */
  reconcileIntervalMs: number;
  /** den's Linux bridge; also the name of its nft tables and the prefix of its network namespaces */
  networkBridge: string;
  /** IPv4 subnet of the sandboxes (the bridge takes its first address) */
  networkSubnet: string;
  /** CIDRs no sandbox reaches whatever its policy (169.254.0.0/16 always) */
  networkDeny: string[];
  /** policy of sandboxes created without one */
  defaultNetwork: { policy: NetworkPolicyName; allow?: string[] };
  /** upstream DNS servers (host[:port]) of den's resolver; default: the host's /etc/resolv.conf */
  dnsUpstreams: string[] | undefined;
  /** preview URLs are http://<port>-<sandbox>.<previewDomain>[:<port of den>] */
  previewDomain: string;
  /** sandboxes kept booted per image/runtime, e.g. "base/runc=2,base/runsc=1" (DEN_WARM_POOL); none by default */
  warmPool: string | undefined;
  /** how often idle sandboxes are looked for and activity is saved (DEN_IDLE_CHECK_MS; default 5000) */
  idleCheckIntervalMs: number;
  /**
   * E2B API: template names that mean a den image, e.g. { "code-interpreter-v1": "base" }. Any other template
   * name is looked up as a den image of that name (`base` is den's base image).
   */
  e2bTemplateAliases: Record<string, string>;
  /**
   * Where snapshots are stored: a local directory (default <home>/objects; DEN_OBJECTS_DIR) or an S3-compatible
   * bucket (when DEN_S3_BUCKET is set; DEN_S3_ENDPOINT, DEN_S3_REGION, DEN_S3_PREFIX, DEN_S3_ACCESS_KEY_ID,
   * DEN_S3_SECRET_ACCESS_KEY, DEN_S3_FORCE_PATH_STYLE). Daemons sharing one can restore each other's snapshots.
   */
  objectStore: ObjectStoreConfig;
}

type Partialish = { [K in keyof DaemonConfig]?: DaemonConfig[K] | undefined };

const DEFAULT_HOME = '/var/lib/den';
/** where the install step puts the base image; shared by every daemon on the machine */
const DEFAULT_STORE = '/var/lib/den/store';

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) {
    throw new DenError('INVALID_ARGUMENT', `listen address "${value}" must be HOST:PORT, for example 127.0.0.1:7070`);
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function fromEnv(env: NodeJS.ProcessEnv): Partialish {
  const listen = env.DEN_LISTEN ? parseListen(env.DEN_LISTEN) : undefined;
  return {
    home: env.DEN_HOME,
    store: env.DEN_STORE,
    host: listen?.host,
    port: listen?.port,
    databaseUrl: env.DEN_DATABASE_URL,
    defaultRuntime: env.DEN_DEFAULT_RUNTIME as RuntimeName | undefined,
    runscPath: env.DEN_RUNSC,
    runcPath: env.DEN_RUNC,
    logLevel: env.DEN_LOG_LEVEL as DaemonConfig['logLevel'] | undefined,
    networkBridge: env.DEN_NETWORK_BRIDGE,
    networkSubnet: env.DEN_NETWORK_SUBNET,
    networkDeny: list(env.DEN_NETWORK_DENY),
    defaultNetwork: env.DEN_NETWORK_DEFAULT_POLICY
      ? { policy: env.DEN_NETWORK_DEFAULT_POLICY as NetworkPolicyName, allow: list(env.DEN_NETWORK_DEFAULT_ALLOW) }
      : undefined,
    dnsUpstreams: list(env.DEN_DNS_UPSTREAMS),
    previewDomain: env.DEN_PREVIEW_DOMAIN,
    warmPool: env.DEN_WARM_POOL,
    idleCheckIntervalMs: env.DEN_IDLE_CHECK_MS ? Number(env.DEN_IDLE_CHECK_MS) : undefined,
    e2bTemplateAliases: env.DEN_E2B_TEMPLATE_ALIASES
      ? parseTemplateAliases(env.DEN_E2B_TEMPLATE_ALIASES, 'DEN_E2B_TEMPLATE_ALIASES')
      : undefined,
    objectStore: objectStoreFromEnv(env),
  };
}

/** `{"template": "image", ...}` as JSON; anything else is an error naming the setting. */
function parseTemplateAliases(text: string, source: string): Record<string, string> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DenError('INVALID_ARGUMENT', `${source} is not valid JSON: ${(err as Error).message}`);
  }
  return checkTemplateAliases(value, source);
}

function checkTemplateAliases(value: unknown, source: string): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new DenError('INVALID_ARGUMENT', `${source} must be an object like {"code-interpreter-v1": "base"}`);
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string' || !v) {
      throw new DenError('INVALID_ARGUMENT', `${source}: template "${k}" must map to an image name (a string)`);
    }
  }
  return value as Record<string, string>;
}

/** A comma-separated list from the environment; undefined when unset. */
function list(value: string | undefined): string[] | undefined {
  return value === undefined
    ? undefined
    : value
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
}

function fromArgs(argv: string[]): Partialish & { config?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      home: { type: 'string' },
      store: { type: 'string' },
      listen: { type: 'string' },
      config: { type: 'string' },
      'database-url': { type: 'string' },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  const listen = values.listen ? parseListen(values.listen) : undefined;
  return {
    home: values.home,
    store: values.store,
    host: listen?.host,
    port: listen?.port,
    databaseUrl: values['database-url'],
    logLevel: values['log-level'] as DaemonConfig['logLevel'] | undefined,
    config: values.config,
  };
}

function fromFile(path: string, required: boolean): Partialish {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new DenError('INVALID_ARGUMENT', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const raw = JSON.parse(text) as Record<string, unknown> & { listen?: string };
    const listen = typeof raw.listen === 'string' ? parseListen(raw.listen) : undefined;
    return {
      ...(raw as Partialish),
      host: listen?.host ?? (raw.host as string),
      port: listen?.port ?? (raw.port as number),
    };
  } catch (err) {
    throw new DenError('INVALID_ARGUMENT', `config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Later sources win; undefined values never override. */
function merge(...layers: Partialish[]): Partialish {
  const out: Partialish = {};
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export function resolveConfig(argv: string[] = [], env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const args = fromArgs(argv);
  const envLayer = fromEnv(env);
  const home = resolve(args.home ?? envLayer.home ?? DEFAULT_HOME);
  const file = fromFile(args.config ?? join(home, 'config.json'), args.config !== undefined);
  const { config: _configPath, ...argLayer } = args;
  const m = merge(file, envLayer, argLayer);
  const cfg: DaemonConfig = {
    home,
    store: resolve(m.store ?? DEFAULT_STORE),
    host: m.host ?? '127.0.0.1',
    port: m.port ?? 7070,
    databaseUrl: m.databaseUrl,
    defaultRuntime: m.defaultRuntime ?? 'runsc',
    runscPath: m.runscPath ?? DEFAULT_RUNSC_BINARY,
    runcPath: m.runcPath ?? DEFAULT_RUNC_BINARY,
    logLevel: m.logLevel ?? 'info',
    reconcileIntervalMs: m.reconcileIntervalMs ?? 10_000,
    networkBridge: m.networkBridge ?? 'den0',
    networkSubnet: m.networkSubnet ?? '10.88.0.0/16',
    networkDeny: m.networkDeny ?? [],
    defaultNetwork: m.defaultNetwork ?? { policy: 'full' },
    dnsUpstreams: m.dnsUpstreams,
    previewDomain: (m.previewDomain ?? 'localhost').toLowerCase(),
    warmPool: m.warmPool,
    idleCheckIntervalMs: m.idleCheckIntervalMs ?? 5_000,
    e2bTemplateAliases: checkTemplateAliases(m.e2bTemplateAliases ?? {}, 'e2bTemplateAliases'),
    objectStore: resolveObjectStoreConfig(m.objectStore, home),
  };
  if (!['none', 'allowlist', 'full'].includes(cfg.defaultNetwork.policy)) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `default network policy "${cfg.defaultNetwork.policy}" must be none, allowlist or full`,
    );
  }
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(cfg.previewDomain)) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `preview domain "${cfg.previewDomain}" must be a DNS name like localhost or preview.example.com`,
    );
  }
  if (!Number.isInteger(cfg.idleCheckIntervalMs) || cfg.idleCheckIntervalMs < 100) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `idle check interval "${cfg.idleCheckIntervalMs}" must be a whole number of milliseconds, at least 100 (DEN_IDLE_CHECK_MS)`,
    );
  }
  if (cfg.defaultRuntime !== 'runsc' && cfg.defaultRuntime !== 'runc') {
    throw new DenError('INVALID_ARGUMENT', `default runtime "${cfg.defaultRuntime}" must be runsc or runc`);
  }
  return cfg;
}
