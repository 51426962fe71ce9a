import type { CreateSandboxRequest, NetworkSettings } from '@den/shared';
import type { SandboxRecord } from '../../services/ports.js';
import { E2BApiError } from './errors.js';
import type { E2BNetworkConfig, E2BNetworkUpdate, E2BNewSandbox } from './schemas.js';

/**
 * Pure translations between E2B's control API and den's sandboxes: requests to den's create/network settings,
 * sandbox records to E2B's response objects, list filters and page tokens. No I/O.
 */

/** The envd version den reports. The SDK switches features on by version (below 0.1.0 it kills the sandbox). */
export const ENVD_VERSION = '0.6.13';
/** E2B's deprecated `clientID` is still a required response field. */
export const CLIENT_ID = 'den';
/** E2B's "all traffic" sentinel (`allTraffic` in the SDK's network callbacks). */
const ALL_TRAFFIC = '0.0.0.0/0';
/** E2B's defaults when `timeout` is omitted: 300 s for v2 create and connect, 15 s for the deprecated v1 calls. */
export const DEFAULT_TIMEOUT_S = { v2: 300, v1: 15 } as const;
/** `endAt` of a sandbox without a timeout: it never ends by itself. */
export const NO_END = '9999-12-31T23:59:59.999Z';

export type E2BState = 'running' | 'paused';

/** Template names the operator maps to den images (`e2bTemplateAliases`); `base` is always den's base image. */
export type TemplateAliases = Record<string, string>;

/** The den image an E2B template ID names: an alias from the table, otherwise the image of the same name. */
export function imageForTemplate(templateID: string, aliases: TemplateAliases): string {
  return Object.hasOwn(aliases, templateID) ? aliases[templateID]! : templateID;
}

/** The body E2B answers for a template it does not know (the SDK throws it as a 404 SandboxError). */
export function templateNotFound(templateID: string): E2BApiError {
  return new E2BApiError(
    404,
    `template '${templateID}' not found: den knows its images (\`den images\`) and the aliases in e2bTemplateAliases`,
  );
}

/**
 * Den's create request for an E2B create. `version` picks E2B's default timeout. Options den cannot honour
 * are a 400 naming them, so a caller never believes it has, say, a volume or an egress proxy it does not have.
 */
export function toCreateRequest(
  body: E2BNewSandbox,
  aliases: TemplateAliases,
  version: keyof typeof DEFAULT_TIMEOUT_S,
): CreateSandboxRequest {
  if (body.volumeMounts?.length) unsupported('volumeMounts', 'den has no volumes yet; copy files in with files.write');
  if (body.iam !== undefined && body.iam !== null) unsupported('iam', 'den has no workload identity tokens');
  if (body.autoResume?.enabled) {
    unsupported('autoResume', 'den does not resume paused sandboxes on traffic yet; resume with Sandbox.connect()');
  }
  const timeoutS = body.timeout ?? DEFAULT_TIMEOUT_S[version];
  const req: CreateSandboxRequest = {
    image: imageForTemplate(body.templateID, aliases),
    timeoutMs: timeoutS * 1000,
    // autoPause: E2B pauses instead of killing at the timeout.
    onTimeout: body.autoPause ? 'pause' : 'delete',
  };
  if (body.metadata && Object.keys(body.metadata).length) req.metadata = body.metadata;
  if (body.envVars && Object.keys(body.envVars).length) req.env = body.envVars;
  const network = toNetworkSettings(body.network ?? {}, body.allow_internet_access);
  if (network) req.network = network;
  // E2B's default is public sandbox URLs (allowPublicTraffic defaults to true).
  req.preview = { public: body.network?.allowPublicTraffic ?? true };
  return req;
}

/**
 * Den's egress policy for E2B's network options, or undefined for "den's default":
 * - `allow_internet_access: false` or `denyOut` containing 0.0.0.0/0: nothing goes out except `allowOut`
 *   (policy none, or allowlist when `allowOut` lists something);
 * - `allowOut` alone changes nothing in E2B (allowed entries only take precedence over denied ones): full.
 * Den cannot deny single destinations while allowing the rest, nor rewrite requests or tunnel them.
 */
export function toNetworkSettings(
  network: Pick<E2BNetworkConfig, 'allowOut' | 'denyOut' | 'rules' | 'egressProxy' | 'httpsPorts' | 'maskRequestHost'>,
  allowInternetAccess: boolean | undefined,
): NetworkSettings | undefined {
  if (network.rules && Object.keys(network.rules).length) {
    unsupported('network.rules', 'den does not rewrite outgoing requests');
  }
  if (network.egressProxy !== undefined && network.egressProxy !== null) {
    unsupported('network.egressProxy', 'den does not tunnel sandbox traffic through a proxy');
  }
  if (network.httpsPorts?.length)
    unsupported('network.httpsPorts', "den's preview proxy speaks plain HTTP to sandboxes");
  if (network.maskRequestHost) unsupported('network.maskRequestHost', "den's preview proxy keeps the Host header");
  const deny = network.denyOut ?? [];
  const allow = network.allowOut ?? [];
  const denyAll = allowInternetAccess === false || deny.includes(ALL_TRAFFIC);
  const partialDeny = deny.filter((d) => d !== ALL_TRAFFIC);
  if (partialDeny.length) {
    unsupported(
      'network.denyOut',
      `den cannot deny single destinations (${partialDeny.join(', ')}); deny all with denyOut ['${ALL_TRAFFIC}'] and list what is allowed in allowOut`,
    );
  }
  if (denyAll) return allow.length ? { policy: 'allowlist', allow } : { policy: 'none' };
  if (allowInternetAccess === true || allow.length) return { policy: 'full' };
  return undefined;
}

/** `PUT /sandboxes/{id}/network`: the update replaces the whole configuration, so "nothing" means full. */
export function toNetworkUpdate(body: E2BNetworkUpdate): NetworkSettings {
  return toNetworkSettings(body, body.allow_internet_access) ?? { policy: 'full' };
}

function unsupported(field: string, why: string): never {
  throw new E2BApiError(400, `${field} is not supported by den: ${why}`);
}

/** E2B knows two states: a den sandbox is "paused" when it is paused or stopped (or on its way), else "running". */
export function e2bState(rec: SandboxRecord): E2BState {
  const resting = ['stopped', 'stopping', 'paused', 'pausing'];
  return rec.desiredState === 'stopped' || rec.desiredState === 'paused' || resting.includes(rec.state)
    ? 'paused'
    : 'running';
}

/** What the create/connect calls answer (E2B's `Sandbox`). */
export function toE2BSandbox(rec: SandboxRecord, domain: string) {
  return {
    sandboxID: rec.id,
    templateID: rec.image,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    ...(rec.envdAccessToken ? { envdAccessToken: rec.envdAccessToken } : {}),
    // Private previews need den's preview token (E2B clients pass trafficAccessToken to whoever opens the URL).
    trafficAccessToken: rec.previewPublic ? null : rec.previewToken,
    domain,
  };
}

/** One entry of the list calls (E2B's `ListedSandbox`). */
export function toListedSandbox(rec: SandboxRecord) {
  return {
    sandboxID: rec.id,
    templateID: rec.image,
    clientID: CLIENT_ID,
    ...(rec.name ? { alias: rec.name } : {}),
    cpuCount: cpuCount(rec),
    memoryMB: rec.memoryMB,
    diskSizeMB: rec.diskMB,
    startedAt: rec.startedAt ?? rec.createdAt,
    endAt: rec.timeoutAt ?? NO_END,
    state: e2bState(rec),
    envdVersion: ENVD_VERSION,
    metadata: rec.metadata,
    volumeMounts: [],
  };
}

/** `GET /sandboxes/{id}` (E2B's `SandboxDetail`). */
export function toSandboxDetail(rec: SandboxRecord, domain: string) {
  const { network } = rec;
  return {
    ...toListedSandbox(rec),
    domain,
    ...(rec.envdAccessToken ? { envdAccessToken: rec.envdAccessToken } : {}),
    allowInternetAccess: network.policy === 'full',
    network: {
      ...(network.policy === 'allowlist' ? { allowOut: network.allow } : {}),
      ...(network.policy === 'full' ? {} : { denyOut: [ALL_TRAFFIC] }),
      allowPublicTraffic: rec.previewPublic,
    },
    lifecycle: { onTimeout: rec.onTimeout === 'delete' ? 'kill' : 'pause', autoResume: false },
  };
}

/** E2B's cpuCount is an integer; den's limit may be fractional (0.5 CPU counts as one). */
export function cpuCount(rec: Pick<SandboxRecord, 'cpus'>): number {
  return Math.max(1, Math.ceil(rec.cpus));
}

/**
 * The metadata filter of the list calls. The SDK sends `encodeURIComponent(key)=encodeURIComponent(value)` pairs
 * joined by URLSearchParams (which encodes again) as one query value (encoded a third time); other clients
 * encode fewer times. Each layer is peeled off until the text stops changing, first for the whole string (while
 * it shows no `=`), then for each key and value, so "a=b&c=d" comes out the same from every client.
 */
export function parseMetadataFilter(raw: string | undefined): Record<string, string> {
  if (!raw) return {};
  let text = raw;
  while (!text.includes('=')) {
    const next = decodeOnce(text);
    if (next === text) break;
    text = next;
  }
  const filter: Record<string, string> = {};
  for (const pair of text.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = decodeUntilStable(eq < 0 ? pair : pair.slice(0, eq));
    const value = decodeUntilStable(eq < 0 ? '' : pair.slice(eq + 1));
    if (key) filter[key] = value;
  }
  return filter;
}

function decodeOnce(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // A lone '%' is literal text, not an escape.
    return text;
  }
}

/**
 * A key or value: its outermost layer may be form encoding ('+' = space, as Python's urlencode writes), the
 * layers below are percent-encoding only, so a '+' that a decode produced stays a '+'.
 */
function decodeUntilStable(text: string): string {
  text = decodeOnce(text.replaceAll('+', ' '));
  for (let i = 0; i < 8; i++) {
    const next = decodeOnce(text);
    if (next === text) return text;
    text = next;
  }
  return text;
}

export function matchesMetadata(rec: SandboxRecord, filter: Record<string, string>): boolean {
  return Object.entries(filter).every(([k, v]) => rec.metadata[k] === v);
}

/** `state=running,paused` (form style, not exploded) or repeated `state=`; unknown states are a 400. */
export function parseStates(raw: string | string[] | undefined): Set<E2BState> | undefined {
  if (raw === undefined) return undefined;
  const states = (Array.isArray(raw) ? raw : [raw]).flatMap((s) => s.split(',')).filter(Boolean);
  for (const s of states) {
    if (s !== 'running' && s !== 'paused') throw new E2BApiError(400, `state "${s}" must be running or paused`);
  }
  return states.length ? new Set(states as E2BState[]) : undefined;
}

/** Order of the list: by start time, then id, so every sandbox has one place and pages never skip or repeat. */
export interface ListPosition {
  startedAt: string;
  id: string;
}

export function listPosition(rec: SandboxRecord): ListPosition {
  return { startedAt: rec.startedAt ?? rec.createdAt, id: rec.id };
}

export function comparePositions(a: ListPosition, b: ListPosition): number {
  if (a.startedAt !== b.startedAt) return a.startedAt < b.startedAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The X-Next-Token of a page: the position of its last sandbox, opaque to clients. */
export function encodePageToken(position: ListPosition): string {
  return Buffer.from(JSON.stringify([position.startedAt, position.id])).toString('base64url');
}

export function decodePageToken(token: string): ListPosition {
  try {
    const value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && typeof value[0] === 'string' && typeof value[1] === 'string') {
      return { startedAt: value[0], id: value[1] };
    }
  } catch {
    // falls through to the error below
  }
  throw new E2BApiError(400, 'nextToken is not a token this server issued: pass the X-Next-Token of the last page');
}
