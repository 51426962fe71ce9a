import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { DenError, type ErrorBody, ErrorStatus } from './contract.js';
import { JSON_CONTENT_TYPE } from './protocol.js';

/** Small helpers over the HTTP/2 core API (no compatibility layer: one less object per request). */

const MAX_JSON_BODY_BYTES = 1024 * 1024;

export function sendJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.headersSent) return;
  const json = Buffer.from(JSON.stringify(body));
  stream.respond({ ':status': status, 'content-type': JSON_CONTENT_TYPE, 'content-length': json.length });
  endAndClose(stream, json);
}

export function sendNoContent(stream: ServerHttp2Stream): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ':status': 204 });
  endAndClose(stream);
}

/** Error response; when headers went out already, the stream is reset so the client sees a failure. */
export function sendError(stream: ServerHttp2Stream, err: unknown): void {
  if (stream.destroyed) return;
  const body = errorBody(err);
  if (stream.headersSent) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  sendJson(stream, ErrorStatus[body.code] ?? 500, body);
}

export function errorBody(err: unknown): ErrorBody {
  if (err instanceof DenError) return err.toJSON();
  console.error('den-agent: unexpected error:', err);
  return { code: 'INTERNAL', message: `unexpected error in the sandbox agent: ${(err as Error)?.message ?? err}` };
}

/**
 * Ends the response, then closes the stream if the client is still sending (an early error answer to an upload),
 * which tells it to stop. Closing only after 'finish' keeps the reset behind the response on the wire. Input not
 * read yet is discarded: a stream whose readable side never ends is never destroyed, and its session could then
 * not close.
 */
export function endAndClose(stream: ServerHttp2Stream, chunk?: Buffer): void {
  if (stream.destroyed || stream.writableEnded) return;
  if (!stream.readableEnded) stream.resume();
  stream.end(chunk);
  stream.once('finish', () => {
    if (!stream.closed) stream.close();
  });
}

export function readJsonBody(stream: ServerHttp2Stream): Promise<Record<string, unknown>> {
  return readBody(stream, MAX_JSON_BODY_BYTES).then((body) => {
    let value: unknown;
    try {
      value = body.length > 0 ? JSON.parse(body.toString('utf8')) : {};
    } catch {
      throw new DenError('INVALID_ARGUMENT', 'the request body is not valid JSON');
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new DenError('INVALID_ARGUMENT', 'the request body must be a JSON object');
    }
    return value as Record<string, unknown>;
  });
}

/** Reads a small body whole. Listeners rather than async iteration, which would destroy the stream on error. */
function readBody(stream: ServerHttp2Stream, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        stream.pause();
        reject(new DenError('INVALID_ARGUMENT', `the request body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('close', () => reject(new DenError('INVALID_ARGUMENT', 'the request was cancelled')));
  });
}

export interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
}

export function parseRequest(headers: IncomingHttpHeaders): Request {
  const raw = headers[':path'] ?? '/';
  const q = raw.indexOf('?');
  return {
    method: headers[':method'] ?? 'GET',
    path: q === -1 ? raw : raw.slice(0, q),
    query: new URLSearchParams(q === -1 ? '' : raw.slice(q + 1)),
  };
}
