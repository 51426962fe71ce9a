import { isTls, type RequestView, TOKEN_HEADERS, withoutTokenCookie } from './token.js';

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, so a proxy removes them, together with every
 * field the Connection header names. `proxy-connection` is the pre-standard spelling some clients still send.
 * `expect` is answered by Node's server before the request reaches us, so forwarding it would make the sandbox
 * answer 100-continue a second time.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
const NEVER_FORWARDED = new Set(TOKEN_HEADERS);

/**
 * The header list (flat, `rawHeaders` style, so case and repeated fields survive) for the request to the sandbox.
 * Host stays as the client sent it because dev servers build absolute URLs and check origins from it; the token
 * header and cookie are removed so the app in the sandbox never sees the credential.
 */
export function upstreamRequestHeaders(req: RequestView, upgrade: boolean): string[] {
  const listed = connectionTokens(req.headers.connection);
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed.has(lower) || NEVER_FORWARDED.has(lower) || FORWARDED.has(lower)) continue;
    if (lower === 'cookie') {
      const kept = withoutTokenCookie(raw[i + 1]!);
      if (kept !== undefined) out.push(name, kept);
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  const tls = isTls(req);
  const priorFor = joined(req.headers['x-forwarded-for']);
  const client = req.socket.remoteAddress ?? '';
  out.push('X-Forwarded-For', priorFor ? `${priorFor}, ${client}` : client);
  // A proxy in front of the daemon (TLS terminator) knows the scheme and host the browser used; keep its answer.
  out.push('X-Forwarded-Proto', joined(req.headers['x-forwarded-proto']) || (tls ? 'https' : 'http'));
  out.push('X-Forwarded-Host', joined(req.headers['x-forwarded-host']) || (req.headers.host ?? ''));
  if (upgrade) out.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'websocket');
  // Node's server has already decoded a chunked body; this tells Node's client to re-frame it (for any method).
  else if (req.headers['transfer-encoding'] !== undefined) out.push('Transfer-Encoding', 'chunked');
  return out;
}

/** The sandbox's response headers for the client, hop-by-hop fields removed (101 keeps its Upgrade pair). */
export function downstreamResponseHeaders(
  raw: string[],
  connection: string | undefined,
  extraSetCookie: string | undefined,
  upgraded = false,
): string[] {
  const listed = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (upgraded && (lower === 'upgrade' || lower === 'connection')) out.push(raw[i]!, raw[i + 1]!);
    else if (!HOP_BY_HOP.has(lower) && !listed.has(lower)) out.push(raw[i]!, raw[i + 1]!);
  }
  if (extraSetCookie !== undefined) out.push('Set-Cookie', extraSetCookie);
  return out;
}

function connectionTokens(connection: string | string[] | undefined): Set<string> {
  const names = new Set<string>();
  for (const t of joined(connection).split(',')) {
    const name = t.trim().toLowerCase();
    // "upgrade" and "close"/"keep-alive" are options, not field names, but dropping same-named fields is harmless.
    if (name !== '') names.add(name);
  }
  return names;
}

function joined(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}
