import { SANDBOX_NAME_PATTERN } from '@den/shared';

/** Where a preview request goes: which sandbox (id or name), which port, and the path+query for the sandbox. */
export interface PreviewRoute {
  /** `host`: `<port>-<ref>.<domain>`; `path`: `/proxy/<ref>/<port>/...` on any host. */
  form: 'host' | 'path';
  ref: string;
  port: number;
  /**
   * The request target to send to the sandbox (`/path?query`). In the path form it does not start with `/` when the
   * URL had no slash after the port (`/proxy/dev/8000` or `/proxy/dev/8000?x=1`): the proxy answers with a 308 to
   * the slash form, because relative links in the page resolve against the directory.
   */
  path: string;
}

export const PATH_FORM_PREFIX = '/proxy/';

// Sandbox ids (20 × [a-z0-9]) are valid names too, so one label pattern accepts both kinds of reference.
const REF = SANDBOX_NAME_PATTERN.slice(1, -1).replaceAll('(', '(?:');
const PORT = '[1-9][0-9]{0,4}';
const HOST_LABEL = new RegExp(`^(${PORT})-(${REF})$`);
const PATH_FORM = new RegExp(`^${PATH_FORM_PREFIX}(${REF})/(${PORT})(?=$|[/?])`);

/**
 * Recognises a preview request; `undefined` means it is not one and the daemon's API handles it.
 * The host form wins over the path form, so an app in a sandbox may itself serve paths under `/proxy/`.
 */
export function parsePreviewRoute(
  req: { url?: string; headers: { host?: string } },
  domain: string,
): PreviewRoute | undefined {
  const url = req.url ?? '/';
  const host = req.headers.host;
  if (host !== undefined) {
    const fromHost = parseHostForm(host, domain);
    // Only origin-form targets (`/...`) are forwarded; `*` or absolute-form are not requests for a page.
    if (fromHost) return url.startsWith('/') ? { form: 'host', ...fromHost, path: url } : undefined;
  }
  const match = PATH_FORM.exec(url);
  if (!match) return undefined;
  const port = validPort(match[2]!);
  if (port === undefined) return undefined;
  return { form: 'path', ref: match[1]!, port, path: url.slice(match[0].length) };
}

/** `<port>-<ref>.<domain>[:<daemonPort>]`, case-insensitive as host names are (RFC 4343). */
function parseHostForm(host: string, domain: string): { ref: string; port: number } | undefined {
  const name = stripPort(host).toLowerCase().replace(/\.$/, '');
  const suffix = `.${domain.toLowerCase().replace(/\.$/, '')}`;
  if (!name.endsWith(suffix)) return undefined;
  const match = HOST_LABEL.exec(name.slice(0, -suffix.length));
  if (!match) return undefined;
  const port = validPort(match[1]!);
  return port === undefined ? undefined : { ref: match[2]!, port };
}

function stripPort(host: string): string {
  const colon = host.lastIndexOf(':');
  // A bracketed IPv6 literal has colons inside the brackets; it never matches a preview domain anyway.
  if (colon === -1 || host.includes(']', colon)) return host;
  return /^[0-9]*$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
}

function validPort(digits: string): number | undefined {
  const port = Number(digits);
  return port >= 1 && port <= 65535 ? port : undefined;
}
