import { UsageError } from './errors.js';

/** Defaults of the daemon's own flags, so `den up` and every other command agree without configuration. */
export const DEFAULT_HOME = '/var/lib/den';
export const DEFAULT_LISTEN = '127.0.0.1:7070';

/** Global options as commander parses them (all optional strings). */
export interface GlobalOptions {
  url?: string;
  home?: string;
  listen?: string;
}

/** What every command works with once flags and environment are resolved. */
export interface CliConfig {
  /** base URL of the daemon the command talks to */
  url: string;
  /** the daemon's data directory (`den up` passes it as --home; daemon.log and daemon.pid live there) */
  home: string;
  /** HOST:PORT the daemon listens on (`den up` passes it as --listen) */
  listen: string;
  /** the URL derived from `listen`: where `den up` / `den down` find the daemon they manage */
  listenUrl: string;
}

/**
 * Resolves global options in one place. Flags beat the environment: `--url`, then `--listen` (as a URL), then
 * `DEN_URL`, then `DEN_LISTEN`, then the default listen address. So `den --listen 127.0.0.1:9000 ls` talks to the
 * daemon it names even when DEN_URL is set for everyday use.
 */
export function resolveCliConfig(flags: GlobalOptions, env: Record<string, string | undefined>): CliConfig {
  const listen = checkListen(flags.listen ?? nonEmpty(env.DEN_LISTEN) ?? DEFAULT_LISTEN);
  const home = flags.home ?? nonEmpty(env.DEN_HOME) ?? DEFAULT_HOME;
  const listenUrl = urlForListen(listen);
  let url: string;
  if (flags.url !== undefined) url = flags.url;
  else if (flags.listen !== undefined) url = listenUrl;
  else url = nonEmpty(env.DEN_URL) ?? listenUrl;
  return { url: url.replace(/\/+$/, ''), home, listen, listenUrl };
}

/** Splits HOST:PORT (IPv6 in brackets: `[::1]:7070`); a bare `:PORT` means loopback. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new UsageError(`listen address "${listen}" is invalid: give HOST:PORT, e.g. ${DEFAULT_LISTEN}`);
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function checkListen(listen: string): string {
  parseListen(listen);
  return listen.trim();
}

/**
 * The URL a client uses to reach a daemon listening on `listen`. A wildcard address (0.0.0.0, ::) accepts
 * connections on loopback, so the client goes there.
 */
export function urlForListen(listen: string): string {
  const { host, port } = parseListen(listen);
  let h = host;
  if (h === '0.0.0.0' || h === '') h = '127.0.0.1';
  else if (h === '::') h = '::1';
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
