import type { IncomingHttpHeaders } from 'node:http';

/** One HTTP/1.1 request head as the fast lane reads it off the client's connection. */
export interface RequestHead {
  method: string;
  /** the request target as sent (origin form `/path?query` for previews) */
  url: string;
  /** flat name/value list in the order and case the client sent them (like IncomingMessage.rawHeaders) */
  rawHeaders: string[];
  /** lower-case names; repeated fields joined as Node joins them (`cookie` with "; ", others with ", ") */
  headers: IncomingHttpHeaders;
  /** bytes of the head, final CRLFCRLF included: the body (if any) starts there */
  length: number;
}

/**
 * Larger heads are left to Node's own parser (which answers 431): the fast lane only takes what it can read with
 * certainty.
 */
export const MAX_HEAD_BYTES = 16 * 1024;

const METHOD = /^[A-Z]{1,20}$/;
const TARGET = /^\/[\x21-\x7e]*$/;
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Field values: visible ASCII, obs-text and inner spaces/tabs; CR, LF and NUL never (RFC 9110 §5.5).
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Fields a request may carry once only; two of them are left to Node's parser to reject or decide. */
const SINGLE = new Set(['host', 'content-length', 'transfer-encoding']);

/**
 * Reads a request head from the start of `buf`: `'incomplete'` until its CRLFCRLF has arrived, `'unsupported'` for
 * anything the fast lane leaves to Node's HTTP parser (which then answers it, or rejects it with the right status):
 * HTTP versions other than 1.1, targets that are not origin-form, obsolete line folding, malformed or repeated
 * framing fields, and heads over MAX_HEAD_BYTES. Being strict here costs nothing: such requests take the full path.
 */
export function parseRequestHead(buf: Buffer): RequestHead | 'incomplete' | 'unsupported' {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return buf.length > MAX_HEAD_BYTES ? 'unsupported' : 'incomplete';
  if (end + 4 > MAX_HEAD_BYTES) return 'unsupported';
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const requestLine = lines[0]!.split(' ');
  if (requestLine.length !== 3 || requestLine[2] !== 'HTTP/1.1') return 'unsupported';
  const [method, url] = requestLine as [string, string];
  if (!METHOD.test(method) || !TARGET.test(url)) return 'unsupported';
  const rawHeaders: string[] = [];
  const headers: IncomingHttpHeaders = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return 'unsupported';
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (!FIELD_NAME.test(name) || !FIELD_VALUE.test(value)) return 'unsupported';
    rawHeaders.push(name, value);
    const lower = name.toLowerCase();
    const prior = headers[lower];
    if (prior === undefined) headers[lower] = value;
    else if (SINGLE.has(lower)) return 'unsupported';
    else headers[lower] = `${prior as string}${lower === 'cookie' ? '; ' : ', '}${value}`;
  }
  return { method, url, rawHeaders, headers, length: end + 4 };
}
