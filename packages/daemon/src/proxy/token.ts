import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { DenError } from '@den/shared';
import type { PreviewRoute } from './route.js';

/** Request headers that carry a preview token; `e2b-traffic-access-token` is E2B's name for the same thing. */
export const TOKEN_HEADERS: readonly string[] = ['x-den-preview-token', 'e2b-traffic-access-token'];
export const TOKEN_QUERY_PARAM = 'den_preview_token';
export const TOKEN_COOKIE = 'den_preview_token';

/**
 * What the proxy reads of a request: Node's IncomingMessage, or a head the fast lane parsed off the socket itself.
 */
export interface RequestView {
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  socket: { remoteAddress?: string | undefined };
}

export type AccessDecision = { allowed: true; setCookie: string | undefined } | { allowed: false; error: DenError };

/**
 * Decides whether a request may reach a private preview (`token` not null). The token may come in a header, the
 * `den_preview_token` query parameter (the browser then gets a cookie, so links inside the app keep working) or that
 * cookie. Any presented copy that matches is enough: a stale cookie must not hide a fresh token in the URL.
 */
export function decideAccess(
  req: RequestView,
  route: PreviewRoute,
  token: string | null,
  sandbox: string,
): AccessDecision {
  if (token === null) return { allowed: true, setCookie: undefined };
  const fromQuery = queryToken(route.path);
  const presented = [...headerTokens(req), cookieToken(req.headers.cookie), fromQuery].filter(
    (t): t is string => t !== undefined && t !== '',
  );
  if (presented.length === 0) {
    return {
      allowed: false,
      error: new DenError(
        'UNAUTHORIZED',
        `the preview of port ${route.port} in sandbox ${sandbox} is private; open it once with ` +
          `?${TOKEN_QUERY_PARAM}=<token> (a cookie keeps access) or send the header X-Den-Preview-Token: <token>`,
      ),
    };
  }
  // Every copy is compared (no early exit) so the time taken says nothing about which one was close.
  let matched = false;
  for (const candidate of presented) matched = tokensEqual(candidate, token) || matched;
  if (!matched) {
    return {
      allowed: false,
      error: new DenError(
        'PERMISSION_DENIED',
        `the preview token for port ${route.port} in sandbox ${sandbox} is wrong; use the sandbox's current ` +
          'preview token',
      ),
    };
  }
  const wantsCookie = fromQuery !== undefined && tokensEqual(fromQuery, token);
  return { allowed: true, setCookie: wantsCookie ? tokenCookie(route, token, isTls(req)) : undefined };
}

/** Constant-time comparison; hashing first makes both sides the same length so the length does not leak either. */
export function tokensEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The cookie that keeps a browser signed in to one preview: host-only (no Domain) in the host form, so other
 * previews on sibling hosts never see it; in the path form the Path confines it to `/proxy/<ref>/<port>/`.
 * HttpOnly keeps the app's own scripts from reading it; SameSite=Lax still sends it on top-level navigation.
 */
export function tokenCookie(route: PreviewRoute, token: string, secure: boolean): string {
  const path = route.form === 'host' ? '/' : `/proxy/${route.ref}/${route.port}/`;
  return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=${path}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** The path with every `den_preview_token` parameter removed; other parameters keep their exact bytes and order. */
export function withoutTokenParam(path: string): string {
  const q = path.indexOf('?');
  if (q === -1) return path;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((pair) => paramName(pair) !== TOKEN_QUERY_PARAM);
  return kept.length === 0 ? path.slice(0, q) : `${path.slice(0, q)}?${kept.join('&')}`;
}

/** A Cookie header without the preview cookie, or undefined when nothing else is left. */
export function withoutTokenCookie(cookie: string): string | undefined {
  const kept = cookie
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c !== '' && cookieName(c) !== TOKEN_COOKIE);
  return kept.length === 0 ? undefined : kept.join('; ');
}

function headerTokens(req: RequestView): (string | undefined)[] {
  // Node joins repeated headers with ", "; tokens never contain that, so a repeated header simply fails to match.
  return TOKEN_HEADERS.map((name) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value[0] : value;
  });
}

function queryToken(path: string): string | undefined {
  const q = path.indexOf('?');
  if (q === -1) return undefined;
  for (const pair of path.slice(q + 1).split('&')) {
    if (paramName(pair) !== TOKEN_QUERY_PARAM) continue;
    const eq = pair.indexOf('=');
    return eq === -1 ? '' : decode(pair.slice(eq + 1).replace(/\+/g, ' '));
  }
  return undefined;
}

function cookieToken(cookie: string | undefined): string | undefined {
  if (cookie === undefined) return undefined;
  for (const c of cookie.split(';')) {
    const trimmed = c.trim();
    if (cookieName(trimmed) === TOKEN_COOKIE) return decode(trimmed.slice(trimmed.indexOf('=') + 1));
  }
  return undefined;
}

function paramName(pair: string): string {
  const eq = pair.indexOf('=');
  return decode(eq === -1 ? pair : pair.slice(0, eq)) ?? '';
}

function cookieName(cookie: string): string {
  const eq = cookie.indexOf('=');
  return (eq === -1 ? cookie : cookie.slice(0, eq)).trim();
}

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** Whether the client reached the daemon over TLS (a TLSSocket has `encrypted: true`). */
export function isTls(req: RequestView): boolean {
  return 'encrypted' in req.socket && req.socket.encrypted === true;
}
