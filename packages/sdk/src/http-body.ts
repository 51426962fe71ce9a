import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConnectionError, RequestTimeoutError } from './errors.js';

/**
 * Transport for file bodies. File contents go through node:http rather than the global fetch: on these machines
 * undici's fetch moved 100 MiB over loopback 2-3x slower than node:http (GET 400-565 ms vs 170-263 ms, PUT
 * 283-334 ms vs 92-125 ms, one Node process, same server). JSON calls and process streams keep using fetch.
 */
export interface BodyRequest {
  method: 'GET' | 'PUT';
  url: string;
  body?: string | Uint8Array | AsyncIterable<Uint8Array>;
  /** 0 = none; otherwise abort if the response headers (GET) or the whole exchange (PUT) take longer */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/** Sends the request (streaming the body) and resolves with the response once its headers arrived. */
export async function requestBody(req: BodyRequest): Promise<IncomingMessage> {
  const url = new URL(req.url);
  const https = url.protocol === 'https:';
  const controller = new AbortController();
  const onAbort = () => controller.abort(req.signal?.reason);
  if (req.signal?.aborted) throw req.signal.reason;
  req.signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer =
    req.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          controller.abort();
        }, req.timeoutMs)
      : undefined;
  const base = url.origin;
  try {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const out = (https ? httpsRequest : httpRequest)(url, {
        method: req.method,
        agent: https ? agents.https : agents.http,
        signal: controller.signal,
        headers: req.body === undefined ? {} : { 'content-type': 'application/octet-stream' },
      });
      out.once('response', resolve);
      out.once('error', reject);
      if (req.body === undefined) out.end();
      else if (typeof req.body === 'string' || req.body instanceof Uint8Array) out.end(req.body);
      else pipeline(Readable.from(req.body), out).catch(reject);
    });
    if (req.method === 'GET') clearTimeout(timer);
    return res;
  } catch (err) {
    clearTimeout(timer);
    if (timedOut) throw new RequestTimeoutError(base, req.timeoutMs);
    if (req.signal?.aborted) throw req.signal.reason;
    throw new ConnectionError(base, err);
  } finally {
    req.signal?.removeEventListener('abort', onAbort);
    if (req.method === 'PUT') clearTimeout(timer);
  }
}

/** Reads a whole response body. */
export async function readAll(res: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
