import { type ClientRequest, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DenError } from '@den/shared';
import {
  fromDenError,
  gatewayError,
  type PreviewError,
  sendError,
  writeErrorToSocket,
  writeRawResponse,
} from './error-page.js';
import { type HandOver, PreviewFastLane } from './fast-lane.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';
import type { RequestHead } from './request-head.js';
import { PATH_FORM_PREFIX, type PreviewRoute, parsePreviewRoute } from './route.js';
import { decideAccess, withoutTokenParam } from './token.js';
import { UpstreamConnections } from './upstream-connections.js';
import { CONNECT_TIMEOUT, RESPONSE_TIMEOUT, watchUpstreamTimeouts } from './upstream-timeouts.js';

/** Where a preview goes: the sandbox's address on the den bridge, and who may see it. */
export interface PreviewTarget {
  sandboxId: string;
  address: string;
  port: number;
  /** the secret a request must present; null makes the preview public */
  token: string | null;
  /**
   * When resolving this request woke the sandbox from a pause (ms since the epoch). gVisor brings restored TCP
   * listeners back a moment after the sandbox answers, so a refused connection right after a wake is retried.
   */
  wokeAt?: number;
}

/** Looks a sandbox reference up; throws `DenError` (`SANDBOX_NOT_FOUND`, `SANDBOX_NOT_RUNNING`, ...). */
export interface PreviewResolver {
  resolve(ref: string, port: number): Promise<PreviewTarget>;
  /** a target known without a lookup (a cache hit), if the resolver keeps any */
  peek?(ref: string, port: number): PreviewTarget | undefined;
}

export interface PreviewProxyOptions {
  /** preview host names are `<port>-<ref>.<domain>` */
  domain: string;
  resolver: PreviewResolver;
  log: { warn(o: object, m?: string): void };
  /** how long a TCP connect into the sandbox may take; a paused or frozen sandbox never answers (default 10 s) */
  connectTimeoutMs?: number;
  /** how long the app may take to send response headers once the request is sent (default 120 s: first builds) */
  responseTimeoutMs?: number;
  /**
   * Host-form previews are relayed per connection (fast-lane.ts) unless this is false. `reserved` names requests
   * with a preview-like host that are not previews (E2B's envd): they go to the daemon's own handlers.
   */
  fastLane?: false | { reserved?: (head: RequestHead) => boolean };
  /** called for each preview request and each chunk of a WebSocket (the daemon's idle tracking) */
  onActivity?: (sandboxId: string) => void;
}

type Admission = { target: PreviewTarget; setCookie: string | undefined };

const CONNECT_TIMEOUT_CODES = new Set([CONNECT_TIMEOUT, 'ETIMEDOUT']);
const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE']);
/** How long after a wake a refused connection is retried (see PreviewTarget.wokeAt). */
const WAKE_RETRY_MS = 3_000;
// Methods a client may expect to be repeated safely (RFC 9110 §9.2.2) when a pooled socket turns out to be stale.
const RETRYABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Reverse proxy from preview URLs to ports inside sandboxes, for plain `node:http` servers: the daemon calls
 * `route(req)` first and hands matching requests (and upgrades) here, everything else to its API.
 * Bodies stream both ways with back-pressure (`pipe`), so memory stays bounded whatever the size; connections to
 * sandboxes are kept alive and pooled per sandbox and port.
 */
export class PreviewProxy {
  private readonly connections = new UpstreamConnections();
  private readonly domain: string;
  private readonly resolver: PreviewResolver;
  private readonly log: PreviewProxyOptions['log'];
  private readonly connectTimeoutMs: number;
  private readonly responseTimeoutMs: number;
  private readonly fastLane: PreviewFastLane | undefined;
  private readonly onActivity: (sandboxId: string) => void;

  constructor(options: PreviewProxyOptions) {
    this.domain = options.domain;
    this.resolver = options.resolver;
    this.log = options.log;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.responseTimeoutMs = options.responseTimeoutMs ?? 120_000;
    this.onActivity = options.onActivity ?? (() => {});
    if (options.fastLane !== false) {
      const reserved = options.fastLane?.reserved;
      this.fastLane = new PreviewFastLane({
        domain: this.domain,
        resolver: this.resolver,
        connections: this.connections,
        isReserved: reserved ?? (() => false),
        connectTimeoutMs: this.connectTimeoutMs,
        responseTimeoutMs: this.responseTimeoutMs,
        onActivity: this.onActivity,
      });
    }
  }

  /**
   * Takes every new client connection of the daemon's server first: host-form preview requests are relayed by the
   * fast lane; any other connection is given to `handOver` (Node's HTTP server) with the bytes read so far.
   */
  acceptConnection(client: Socket, handOver: HandOver): void {
    if (this.fastLane) this.fastLane.accept(client, handOver);
    else handOver(client, Buffer.alloc(0));
  }

  route(req: IncomingMessage): PreviewRoute | undefined {
    return parsePreviewRoute(req, this.domain);
  }

  /** Answers one preview request; never throws (failures become error pages or a cut connection). */
  async handleRequest(req: IncomingMessage, res: ServerResponse, route: PreviewRoute): Promise<void> {
    if (needsSlashRedirect(route)) {
      res.writeHead(308, { Location: slashRedirect(route), 'Content-Length': 0 });
      res.end();
      return;
    }
    const admission = await this.admit(req, route);
    if ('status' in admission) {
      sendError(req, res, admission);
      return;
    }
    this.onActivity(admission.target.sandboxId);
    this.forward(req, res, route, admission, true);
  }

  /** Relays an HTTP upgrade (WebSocket) to the sandbox and then copies bytes both ways until either side closes. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, route: PreviewRoute): Promise<void> {
    let upstream: ClientRequest | undefined;
    // Until the sockets are joined, a client that goes away must take the pending upstream request with it.
    socket.on('error', () => upstream?.destroy());
    socket.once('close', () => upstream?.destroy());
    if (needsSlashRedirect(route)) {
      writeRawResponse(socket, 308, ['Location', slashRedirect(route), 'Content-Length', '0']);
      socket.end();
      return;
    }
    const admission = await this.admit(req, route);
    if ('status' in admission) {
      writeErrorToSocket(req, socket, admission);
      return;
    }
    if (socket.destroyed) return;
    const { target } = admission;
    this.onActivity(target.sandboxId);
    upstream = request({
      host: target.address,
      port: target.port,
      method: req.method,
      path: withoutTokenParam(route.path),
      headers: upstreamRequestHeaders(req, true),
      setHost: false,
      // An upgraded socket leaves any pool, so it gets its own connection; it is tracked from the start so that
      // dropConnections also cuts a handshake still in progress.
      agent: false,
    });
    const stopClock = watchUpstreamTimeouts(upstream, this.connectTimeoutMs, this.responseTimeoutMs);
    upstream.on('socket', (s: Socket) => this.connections.trackTunnel(target.sandboxId, s));
    upstream.on('upgrade', (upRes: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      stopClock();
      writeRawUpgrade(socket, upRes);
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      joinSockets(socket, upSocket, () => this.onActivity(target.sandboxId));
    });
    upstream.on('response', (upRes: IncomingMessage) => {
      // The app answered without switching protocols (e.g. 404 or 401 from the app): relay it and close.
      stopClock();
      writeRawResponse(
        socket,
        upRes.statusCode ?? 502,
        downstreamResponseHeaders(upRes.rawHeaders, upRes.headers.connection, undefined),
        upRes.statusMessage,
      );
      upRes.pipe(socket);
      upRes.on('close', () => (upRes.complete ? undefined : socket.destroy()));
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (socket.destroyed) return;
      writeErrorToSocket(req, socket, this.upstreamError(err, route, target));
    });
    upstream.end();
  }

  /** Destroys pooled, in-flight and upgraded connections to the sandbox (before a checkpoint or stop). */
  dropConnections(sandboxId: string): void {
    this.connections.drop(sandboxId);
  }

  /** Connection counts to one sandbox: idle pooled sockets, sockets in use, upgraded connections. */
  connectionCount(sandboxId: string): { idle: number; active: number; tunnels: number } {
    return this.connections.count(sandboxId);
  }

  close(): void {
    this.fastLane?.close();
    this.connections.close();
  }

  private async admit(req: IncomingMessage, route: PreviewRoute): Promise<Admission | PreviewError> {
    let target: PreviewTarget;
    try {
      target = await this.resolver.resolve(route.ref, route.port);
    } catch (err) {
      if (err instanceof DenError) return fromDenError(err);
      this.log.warn({ err, ref: route.ref, port: route.port }, 'preview resolver failed');
      return fromDenError(new DenError('INTERNAL', `could not look up sandbox ${route.ref}; see the daemon log`));
    }
    const access = decideAccess(req, route, target.token, route.ref);
    return access.allowed ? { target, setCookie: access.setCookie } : fromDenError(access.error);
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    route: PreviewRoute,
    { target, setCookie }: Admission,
    mayRetry: boolean,
  ): void {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    const upstream = request({
      host: target.address,
      port: target.port,
      method: req.method,
      path: withoutTokenParam(route.path),
      headers: upstreamRequestHeaders(req, false),
      setHost: false,
      agent: this.connections.agentFor(target.sandboxId),
    });
    let answered = false;
    const onClientGone = () => {
      if (!res.writableFinished) upstream.destroy();
    };
    res.once('close', onClientGone);

    const stopClock = watchUpstreamTimeouts(upstream, this.connectTimeoutMs, this.responseTimeoutMs);
    // Small writes (SSE events, HMR messages) must leave at once rather than wait for Nagle's algorithm.
    upstream.on('socket', (s: Socket) => s.setNoDelay(true));
    upstream.on('response', (upRes: IncomingMessage) => {
      answered = true;
      stopClock();
      const headers = downstreamResponseHeaders(upRes.rawHeaders, upRes.headers.connection, setCookie);
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage || undefined, headers);
      // Node holds headers until the first body write; an event stream may not write for a long time.
      if (/^text\/event-stream/i.test(upRes.headers['content-type'] ?? '')) res.flushHeaders();
      upRes.pipe(res);
      // A response the sandbox cut short must be cut short for the client too, not ended as if it were complete.
      upRes.once('close', () => (upRes.complete ? undefined : res.destroy()));
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (res.destroyed) return;
      const staleReuse =
        mayRetry &&
        !answered &&
        !hasBody &&
        upstream.reusedSocket &&
        STALE_SOCKET_CODES.has(err.code ?? '') &&
        RETRYABLE_METHODS.has(req.method ?? '');
      if (staleReuse) {
        // The sandbox closed an idle pooled socket just as it was reused; the request never reached the app.
        res.off('close', onClientGone);
        this.forward(req, res, route, { target, setCookie }, false);
        return;
      }
      if (answered || res.headersSent) {
        res.destroy();
        return;
      }
      const justWoken = target.wokeAt !== undefined && Date.now() - target.wokeAt < WAKE_RETRY_MS;
      if (err.code === 'ECONNREFUSED' && justWoken && !hasBody) {
        res.off('close', onClientGone);
        setTimeout(() => this.forward(req, res, route, { target, setCookie }, mayRetry), 25);
        return;
      }
      sendError(req, res, this.upstreamError(err, route, target));
    });
    if (hasBody) req.pipe(upstream);
    else upstream.end();
  }

  private upstreamError(err: NodeJS.ErrnoException, route: PreviewRoute, target: PreviewTarget): PreviewError {
    const where = `port ${route.port} in sandbox ${route.ref}`;
    const code = err.code ?? '';
    if (code === 'ECONNREFUSED') {
      return gatewayError(
        'PORT_NOT_LISTENING',
        `nothing is listening on port ${route.port} in sandbox ${route.ref}; start your server bound to 0.0.0.0`,
      );
    }
    if (code === RESPONSE_TIMEOUT) {
      return gatewayError(
        'PREVIEW_TIMEOUT',
        `${where} accepted the request but sent no response within ${this.responseTimeoutMs / 1000} s; check that the server is not stuck`,
      );
    }
    if (CONNECT_TIMEOUT_CODES.has(code)) {
      return gatewayError(
        'PREVIEW_TIMEOUT',
        `${where} did not accept a connection within ${this.connectTimeoutMs / 1000} s; the sandbox may be paused or overloaded`,
      );
    }
    if (UNREACHABLE_CODES.has(code)) {
      return gatewayError(
        'PREVIEW_UNREACHABLE',
        `sandbox ${route.ref} is unreachable at ${target.address}; it may be stopping, restart it if it stays so`,
      );
    }
    if (!STALE_SOCKET_CODES.has(code))
      this.log.warn({ err, sandboxId: target.sandboxId, port: route.port }, 'preview failed');
    return gatewayError(
      'PREVIEW_UNREACHABLE',
      `${where} closed the connection without answering (${code || err.message})`,
    );
  }
}

function needsSlashRedirect(route: PreviewRoute): boolean {
  return route.form === 'path' && !route.path.startsWith('/');
}

/** `/proxy/<ref>/<port>?q` -> `/proxy/<ref>/<port>/?q` (route.path holds just the query here). */
function slashRedirect(route: PreviewRoute): string {
  return `${PATH_FORM_PREFIX}${route.ref}/${route.port}/${route.path}`;
}

function writeRawUpgrade(socket: Duplex, upRes: IncomingMessage): void {
  let head = `HTTP/1.1 101 ${upRes.statusMessage || 'Switching Protocols'}\r\n`;
  const headers = downstreamResponseHeaders(upRes.rawHeaders, upRes.headers.connection, undefined, true);
  for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  socket.write(`${head}\r\n`);
}

/**
 * Copies bytes both ways. An end (FIN) passes through `pipe`; when one side closes completely the other is ended
 * after its pending writes are flushed (a WebSocket close frame must not be thrown away), then destroyed.
 */
function joinSockets(client: Duplex, upstream: Socket, onData: () => void): void {
  upstream.on('data', onData);
  client.on('data', onData);
  upstream.setNoDelay(true);
  if ('setNoDelay' in client && typeof client.setNoDelay === 'function') (client as Socket).setNoDelay(true);
  upstream.pipe(client);
  client.pipe(upstream);
  upstream.once('close', () => closeAfterFlush(client));
  client.once('close', () => closeAfterFlush(upstream));
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
}

function closeAfterFlush(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.end();
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', () => socket.destroy());
}
