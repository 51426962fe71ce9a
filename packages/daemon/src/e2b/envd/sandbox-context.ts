import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { createContextKey } from '@connectrpc/connect';
import { DenError } from '@den/shared';
import type { AgentConnection, SandboxRecord } from '../../services/ports.js';

/** What every envd request needs: the sandbox's agent, its record and the user the call acts as. */
export interface EnvdTarget {
  sandbox: SandboxRecord;
  agent: AgentConnection;
  /** from `Authorization: Basic base64("<user>:")`; undefined = the image's default user */
  user: string | undefined;
}

/** The part of SandboxService envd needs. */
export interface EnvdSandboxes {
  resolve(ref: string): Promise<SandboxRecord>;
  agentFor(ref: string): Promise<AgentConnection>;
}

/** Connect handlers find their sandbox under this key (filled by the adapter's contextValues). */
export const targetKey = createContextKey<Promise<EnvdTarget> | undefined>(undefined, { description: 'envd target' });

/**
 * The sandbox's envd access token, when it has one. The control API (packages/daemon/src/e2b/control) adds
 * `envdAccessToken` to SandboxRecord for sandboxes created `secure`; read without assuming the field exists.
 */
export function accessTokenOf(sandbox: SandboxRecord): string | undefined {
  const token = (sandbox as SandboxRecord & { envdAccessToken?: string | null }).envdAccessToken;
  return typeof token === 'string' && token.length > 0 ? token : undefined;
}

/** The user named by `Authorization: Basic base64("<user>:")`, as the e2b SDK sends it. */
export function userFromAuthorization(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Basic\s+(\S+)$/i.exec(header.trim());
  if (!match) throw new DenError('INVALID_ARGUMENT', 'the Authorization header must be `Basic base64("<user>:")`');
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon === -1 ? decoded : decoded.slice(0, colon);
  return user.length > 0 ? user : undefined;
}

/** Resolves the sandbox and checks the `X-Access-Token` header when the sandbox requires one. */
export async function resolveTarget(
  sandboxes: EnvdSandboxes,
  sandboxId: string,
  headers: IncomingHttpHeaders,
  options: { tokenOptional?: boolean } = {},
): Promise<EnvdTarget> {
  const sandbox = await sandboxes.resolve(sandboxId);
  const token = accessTokenOf(sandbox);
  if (token && !options.tokenOptional) checkAccessToken(token, headerValue(headers['x-access-token']));
  const user = userFromAuthorization(headerValue(headers.authorization));
  return { sandbox, agent: await sandboxes.agentFor(sandbox.id), user };
}

export function checkAccessToken(expected: string, given: string | undefined): void {
  if (given === undefined || !safeEqual(expected, given)) {
    throw new DenError(
      'UNAUTHORIZED',
      given === undefined
        ? 'this sandbox requires its envd access token in the X-Access-Token header (the SDK sends it when created with secure: true)'
        : 'the X-Access-Token header does not match the sandbox’s envd access token',
    );
  }
}

/**
 * Checks a signed file URL (`Sandbox.downloadUrl` / `uploadUrl`): `v1_` + unpadded base64 of
 * sha256("<path>:<operation>:<user>:<token>[:<expiration>]"), expiration in Unix seconds.
 */
export function checkFileSignature(
  token: string,
  params: {
    path: string;
    operation: 'read' | 'write';
    user: string | undefined;
    signature: string;
    expiration?: string;
  },
): void {
  let raw = `${params.path}:${params.operation}:${params.user ?? ''}:${token}`;
  if (params.expiration !== undefined && params.expiration !== '') {
    const expiration = Number(params.expiration);
    if (!Number.isInteger(expiration)) {
      throw new DenError('INVALID_ARGUMENT', 'signature_expiration must be a Unix time in whole seconds');
    }
    if (expiration * 1000 < Date.now()) {
      throw new DenError('UNAUTHORIZED', 'the signed file URL has expired; ask the SDK for a new one');
    }
    raw += `:${expiration}`;
  }
  const expected = `v1_${createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')}`;
  if (!safeEqual(expected, params.signature)) {
    throw new DenError('UNAUTHORIZED', `the file URL signature does not match path, operation and user`);
  }
}

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
