import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { type DenError, type ErrorCode, ErrorStatus } from '@den/shared';

/**
 * Failures only the proxy produces. They have no `ErrorCode` in `@den/shared` yet (its statuses stop at 500 and 507),
 * so they live here with their gateway statuses; they are candidates to move into the shared registry.
 */
export const PreviewGatewayStatus = {
  /** the sandbox refused the connection: no server listens on that port (or it listens on 127.0.0.1 only) */
  PORT_NOT_LISTENING: 502,
  /** the connection failed or broke before a response (host unreachable, reset) */
  PREVIEW_UNREACHABLE: 502,
  /** no connection or no response headers within the proxy's time limits */
  PREVIEW_TIMEOUT: 504,
} as const;

export type PreviewErrorCode = ErrorCode | keyof typeof PreviewGatewayStatus;

export interface PreviewError {
  status: number;
  code: PreviewErrorCode;
  message: string;
}

export function fromDenError(err: DenError): PreviewError {
  return { status: ErrorStatus[err.code], code: err.code, message: err.message };
}

export function gatewayError(code: keyof typeof PreviewGatewayStatus, message: string): PreviewError {
  return { status: PreviewGatewayStatus[code], code, message };
}

interface RenderedError {
  contentType: string;
  body: string;
}

/** HTML for browsers (whoever accepts text/html), JSON `{code, message}` like the API for everything else. */
export function renderError(req: { headers: IncomingHttpHeaders }, error: PreviewError): RenderedError {
  if (acceptsHtml(req.headers.accept)) return { contentType: 'text/html; charset=utf-8', body: html(error) };
  return {
    contentType: 'application/json; charset=utf-8',
    body: JSON.stringify({ code: error.code, message: error.message }),
  };
}

/** Answers a normal request with the error page, unless the sandbox's response has already begun. */
export function sendError(req: IncomingMessage, res: ServerResponse, error: PreviewError): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const { contentType, body } = renderError(req, error);
  res.writeHead(error.status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

/** The same answer written on the raw socket of an upgrade request (there is no ServerResponse for those). */
export function writeErrorToSocket(req: { headers: IncomingHttpHeaders }, socket: Duplex, error: PreviewError): void {
  const { contentType, body } = renderError(req, error);
  writeRawResponse(socket, error.status, [
    'Content-Type',
    contentType,
    'Content-Length',
    String(Buffer.byteLength(body)),
    'Cache-Control',
    'no-store',
  ]);
  socket.end(body);
}

/**
 * Writes a status line and headers (flat name/value list) with `Connection: close`, so the body may simply run to
 * the end of the connection; the caller writes the body and ends the socket.
 */
export function writeRawResponse(socket: Duplex, status: number, headers: string[], reason?: string): void {
  if (socket.destroyed || !socket.writable) return;
  let head = `HTTP/1.1 ${status} ${reason || STATUS_TEXT[status] || 'Unknown'}\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  socket.write(`${head}Connection: close\r\n\r\n`);
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function acceptsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /(^|,)\s*(text\/html|application\/xhtml\+xml)\s*(;|,|$)/i.test(accept);
}

function html(error: PreviewError): string {
  const title = `${error.status} ${escapeHtml(STATUS_TEXT[error.status] ?? 'Error')}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · den preview</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; margin-bottom: 0.25rem; }
code { background: #f2f2f2; padding: 0.1rem 0.3rem; border-radius: 3px; }
.code { color: #777; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>${title}</h1>
<p class="code">den preview · <code>${escapeHtml(error.code)}</code></p>
<p>${escapeHtml(error.message)}</p>
</body>
</html>
`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
