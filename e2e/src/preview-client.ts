import { createHash } from 'node:crypto';
import { type Agent, request } from 'node:http';

/** What came back from den's preview proxy, with when each piece of the body arrived. */
export interface PreviewResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** true when the client's keep-alive agent sent this request on a socket an earlier request had used */
  reusedSocket: boolean;
  /** `performance.now()` at each body chunk's arrival, and at the end of the body */
  chunkTimes: number[];
  endTime: number;
}

export interface PreviewRequestOptions {
  method?: string;
  /** headers as sent; `host` picks the host-form preview (fetch forbids setting Host, node:http does not) */
  headers?: Record<string, string>;
  body?: Buffer;
  /** a keep-alive agent to reuse connections; default: a fresh connection per request */
  agent?: Agent;
}

/** One HTTP request to the daemon (and so through the preview proxy when the host or path says so). */
export function previewRequest(base: string, path: string, opts: PreviewRequestOptions = {}): Promise<PreviewResponse> {
  const url = new URL(base);
  const headers = { ...opts.headers };
  if (opts.body) headers['content-length'] = String(opts.body.length);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: opts.method ?? 'GET',
        headers,
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const chunkTimes: number[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          chunkTimes.push(performance.now());
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            reusedSocket: req.reusedSocket,
            chunkTimes,
            endTime: performance.now(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The JSON error body of the proxy (`{code, message}`), failing with the body when it is not JSON. */
export function errorCode(res: PreviewResponse): string {
  try {
    return (JSON.parse(res.body.toString('utf8')) as { code: string }).code;
  } catch {
    throw new Error(`expected a JSON error body, got ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
  }
}
