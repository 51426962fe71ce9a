import { InvalidArgumentError } from './errors.js';

/** Where a den daemon listens when nothing else is configured (the daemon's own default `--listen`). */
export const DEFAULT_URL = 'http://127.0.0.1:7070';
/**
 * Default time a request may take until the daemon answers. Generous because creating, stopping or restarting a
 * sandbox waits for the runtime; streams (exec output, file downloads) are bounded only until their headers arrive.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/** How to reach the daemon. Every field may be given per call, per client, or left to the environment. */
export interface ConnectionOptions {
  /** base URL of the den daemon, e.g. `http://127.0.0.1:7070`; env `DEN_URL` */
  url?: string;
  /** abort a request when the daemon has not answered within this many ms; 0 disables the limit */
  requestTimeoutMs?: number;
}

/** Options of one call: connection options plus an abort signal. */
export interface RequestOptions extends ConnectionOptions {
  signal?: AbortSignal;
}

/** The resolved configuration every request uses. */
export interface ResolvedConfig {
  /** base URL without a trailing slash */
  url: string;
  requestTimeoutMs: number;
}

/**
 * Resolves the configuration in one place: per-call options, then client options, then the environment
 * (`DEN_URL`), then the defaults.
 *
 * @example
 * ```ts
 * resolveConfig({}, { url: 'http://10.0.0.2:7070' }).url; // 'http://10.0.0.2:7070'
 * resolveConfig({}, {}, { DEN_URL: 'http://den:7070/' }).url; // 'http://den:7070'
 * ```
 */
export function resolveConfig(
  call: ConnectionOptions = {},
  client: ConnectionOptions = {},
  env: Record<string, string | undefined> = process.env,
): ResolvedConfig {
  const url = call.url ?? client.url ?? nonEmpty(env.DEN_URL) ?? DEFAULT_URL;
  const requestTimeoutMs = call.requestTimeoutMs ?? client.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isFinite(requestTimeoutMs) || requestTimeoutMs < 0) {
    throw new InvalidArgumentError(
      `requestTimeoutMs ${requestTimeoutMs} is invalid: give a number of milliseconds >= 0 (0 = no limit)`,
    );
  }
  return { url: normalizeUrl(url), requestTimeoutMs };
}

/** Checks that `url` is an http(s) URL and strips trailing slashes, so paths can be appended as they are. */
export function normalizeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentError(`den URL "${url}" is not a URL: give one such as ${DEFAULT_URL}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new InvalidArgumentError(`den URL "${url}" must start with http:// or https://, e.g. ${DEFAULT_URL}`);
  }
  return url.replace(/\/+$/, '');
}

/** The WebSocket URL for an http(s) base URL: `http:` -> `ws:`, `https:` -> `wss:`. */
export function toWebSocketUrl(httpUrl: string): string {
  return httpUrl.replace(/^http/, 'ws');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
