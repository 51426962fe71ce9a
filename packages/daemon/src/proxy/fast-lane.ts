import { connect, type Socket } from 'node:net';
import { gatewayError, writeErrorToSocket } from './error-page.js';
import { upstreamRequestHeaders } from './headers.js';
import type { PreviewResolver, PreviewTarget } from './preview-proxy.js';
import { relayReads } from './relay-reads.js';
import { parseRequestHead, type RequestHead } from './request-head.js';
import { type PreviewRoute, parsePreviewRoute } from './route.js';
import { decideAccess, type RequestView, TOKEN_HEADERS, TOKEN_QUERY_PARAM } from './token.js';
import type { UpstreamConnections } from './upstream-connections.js';

export interface FastLaneOptions {
  domain: string;
  resolver: PreviewResolver;
  connections: UpstreamConnections;
  /** requests the daemon answers itself although their host looks like a preview (E2B's envd on 49983-<id>) */
  isReserved(head: RequestHead): boolean;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** called for every request the lane forwards and every chunk of an upgraded connection (idle tracking) */
  onActivity?: (sandboxId: string) => void;
}

/**
 * Gives the full proxy a connection: the client socket and the bytes the lane has read but not forwarded. Only
 * called at a request boundary, before the lane wrote anything to the client for that request.
 */
export type HandOver = (client: Socket, unread: Buffer) => void;

/**
 * The preview proxy's fast path: a client connection whose requests all go to the same preview (host form) is
 * relayed at the TCP level to one connection into the sandbox. Each request head is still read, checked (route,
 * token) and rewritten exactly as the full proxy does (X-Forwarded-*, token header and cookie removed, hop-by-hop
 * fields dropped), bodies with a Content-Length are copied as they are, and responses come back byte for byte.
 * This skips Node's HTTP parser and client on both hops, which were most of the proxy's cost (a small GET took
 * ~0.4 ms more than a direct request; a relay adds ~0.1 ms).
 *
 * Everything else takes the full proxy (preview-proxy.ts), which the lane hands the connection to at a request
 * boundary: the path form, query-string tokens (they set a cookie), missing or wrong tokens (error pages), chunked
 * request bodies, `Expect`, `Connection: close`, anything unusual in the head, a sandbox that had to be woken, a failed connect, or a
 * request for another preview on the same connection. What the lane does not do, by design: the response keeps the
 * app's own hop-by-hop fields (the connection is the app's: its keep-alive timeout governs it, and the client
 * connection ends when the app closes its end), and a request is not retried on another connection. Pipelined
 * requests the lane forwards are answered in order; one it hands over while the response to an earlier one is still
 * arriving cuts that response (the lane does not parse responses; browsers and Node's client do not pipeline).
 */
export class PreviewFastLane {
  private readonly open = new Set<LaneConnection>();

  constructor(private readonly options: FastLaneOptions) {}

  /** Takes a new client connection; `handOver` receives it back when the full proxy (or the API) must answer. */
  accept(client: Socket, handOver: HandOver): void {
    const lane = new LaneConnection(client, this.options, (unread) => {
      this.open.delete(lane);
      handOver(client, unread);
    });
    this.open.add(lane);
    client.once('close', () => this.open.delete(lane));
  }

  close(): void {
    for (const lane of this.open) lane.destroy();
    this.open.clear();
  }
}

class LaneConnection {
  /** bytes read from the client and not yet forwarded */
  private pending: Buffer = Buffer.alloc(0);
  /** body bytes of the current request still to copy */
  private bodyLeft = 0;
  /** after an upgrade request everything is copied as it is, both ways */
  private raw = false;
  private upstream: Socket | undefined;
  private target: PreviewTarget | undefined;
  private working = false;
  private handedOver = false;
  private responseTimer: NodeJS.Timeout | undefined;
  /** the head of the request whose response has not begun yet (for an error page on timeout) */
  private waitingFor: RequestHead | undefined;
  /** the sandbox token and the credentials last accepted on this connection */
  private accepted: { token: string; presented: string } | undefined;
  private readonly onClientData = (chunk: Buffer) => this.fromClient(chunk);
  private readonly onClientEnd = () => (this.upstream ? this.upstream.end() : this.client.destroy());
  private readonly onClientClose = () => this.destroy();

  constructor(
    private readonly client: Socket,
    private readonly options: FastLaneOptions,
    private readonly handOver: (unread: Buffer) => void,
  ) {
    client.setNoDelay(true);
    client.on('data', this.onClientData);
    client.on('end', this.onClientEnd);
    client.on('close', this.onClientClose);
    // Errors end in 'close'; without a listener an ECONNRESET would be thrown.
    client.on('error', noop);
  }

  destroy(): void {
    clearTimeout(this.responseTimer);
    this.upstream?.destroy();
    if (!this.handedOver) this.client.destroy();
  }

  private fromClient(chunk: Buffer): void {
    if (this.raw && this.upstream && !this.working) {
      if (this.target) this.options.onActivity?.(this.target.sandboxId);
      this.toUpstream(chunk);
      return;
    }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    this.pump();
  }

  /**
   * Forwards what `pending` holds: body bytes, then request heads, one at a time. A head whose target is cached and
   * whose connection is open goes out synchronously; otherwise the lookup or connect is awaited first.
   */
  private pump(): void {
    while (!this.working && !this.handedOver && !this.client.destroyed) {
      if (this.bodyLeft > 0 || this.raw) {
        if (this.pending.length === 0) return;
        const n = this.raw ? this.pending.length : Math.min(this.bodyLeft, this.pending.length);
        this.toUpstream(this.pending.subarray(0, n));
        this.pending = this.pending.subarray(n);
        if (!this.raw) {
          this.bodyLeft -= n;
          if (this.bodyLeft === 0) this.armResponseTimer();
        }
        continue;
      }
      if (this.pending.length === 0) return;
      const head = parseRequestHead(this.pending);
      if (head === 'incomplete') return;
      const request = head === 'unsupported' ? undefined : this.check(head);
      if (!request) {
        this.giveUp();
        return;
      }
      const target = this.options.resolver.peek?.(request.route.ref, request.route.port);
      if (target && this.upstream) {
        if (this.send(request, target)) continue;
        this.giveUp();
        return;
      }
      this.working = true;
      void this.prepare(request).then((ready) => {
        this.working = false;
        if (!ready || !this.send(request, ready)) this.giveUp();
        else this.pump();
      });
      return;
    }
  }

  /** What the lane can decide from the head alone; undefined when the full proxy must answer the request. */
  private check(head: RequestHead): LaneRequest | undefined {
    const { headers } = head;
    const route = parsePreviewRoute({ url: head.url, headers }, this.options.domain);
    if (route?.form !== 'host' || this.options.isReserved(head)) return undefined;
    if (headers['transfer-encoding'] !== undefined || headers.expect !== undefined) return undefined;
    // The last request of a connection (`Connection: close`): the full proxy ends the connection after the response,
    // which the lane cannot tell the end of (and an app may answer `keep-alive` regardless).
    if (/(^|,)\s*close\s*(,|$)/i.test(headers.connection ?? '')) return undefined;
    const length = headers['content-length'];
    if (length !== undefined && !/^[0-9]{1,15}$/.test(length)) return undefined;
    if (head.url.includes(TOKEN_QUERY_PARAM)) return undefined;
    return { head, route, bodyLength: length === undefined ? 0 : Number(length) };
  }

  /** Looks the target up and opens the connection into the sandbox (the first request of a connection). */
  private async prepare(request: LaneRequest): Promise<PreviewTarget | undefined> {
    let target: PreviewTarget;
    try {
      target = await this.options.resolver.resolve(request.route.ref, request.route.port);
    } catch {
      return undefined;
    }
    if (target.wokeAt !== undefined) return undefined;
    if (!this.upstream && !(await this.connect(target))) return undefined;
    return target;
  }

  /** Checks access and forwards the head; false (nothing sent) when the full proxy must answer instead. */
  private send({ head, route, bodyLength }: LaneRequest, target: PreviewTarget): boolean {
    if (this.target && !sameTarget(this.target, target)) return false;
    if (!this.upstream || this.upstream.destroyed || this.client.destroyed) return false;
    const { headers } = head;
    const view = { headers, rawHeaders: head.rawHeaders, socket: this.client };
    if (!this.admitted(view, route, target)) return false;
    const upgrade = headers.upgrade !== undefined && /(^|,)\s*upgrade\s*(,|$)/i.test(headers.connection ?? '');
    const fields = upstreamRequestHeaders(view, upgrade);
    let text = `${head.method} ${head.url} HTTP/1.1\r\n`;
    for (let i = 0; i + 1 < fields.length; i += 2) text += `${fields[i]}: ${fields[i + 1]}\r\n`;
    this.toUpstream(Buffer.from(`${text}\r\n`, 'latin1'));
    this.options.onActivity?.(target.sandboxId);
    this.pending = this.pending.subarray(head.length);
    this.waitingFor = head;
    this.bodyLeft = bodyLength;
    this.raw = upgrade;
    if (bodyLength === 0) this.armResponseTimer();
    return true;
  }

  /**
   * Token check. The credentials a request presents (token headers, cookie) are usually the same on every request of
   * a connection: once they were accepted for the sandbox's current token, identical ones are accepted again without
   * hashing (comparing them with what this same client sent before reveals nothing about the token).
   */
  private admitted(view: RequestView, route: PreviewRoute, target: PreviewTarget): boolean {
    if (target.token === null) return true;
    const presented = credentialsOf(view);
    const last = this.accepted;
    if (last && last.token === target.token && last.presented === presented) return true;
    const access = decideAccess(view, route, target.token, route.ref);
    if (!access.allowed || access.setCookie !== undefined) return false;
    this.accepted = { token: target.token, presented };
    return true;
  }

  /** Opens the connection into the sandbox; false (nothing sent yet) lets the full proxy explain the failure. */
  private connect(target: PreviewTarget): Promise<boolean> {
    return new Promise((resolve) => {
      const upstream = connect({
        host: target.address,
        port: target.port,
        noDelay: true,
        onread: relayReads((bytes) => this.fromUpstream(bytes)),
      });
      const timer = setTimeout(() => upstream.destroy(), this.options.connectTimeoutMs);
      upstream.once('connect', () => {
        clearTimeout(timer);
        if (this.client.destroyed) {
          upstream.destroy();
          resolve(false);
          return;
        }
        this.attach(upstream, target);
        resolve(true);
      });
      upstream.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
      upstream.once('close', () => clearTimeout(timer));
    });
  }

  private attach(upstream: Socket, target: PreviewTarget): void {
    this.upstream = upstream;
    this.target = target;
    this.options.connections.trackTunnel(target.sandboxId, upstream);
    let ended = false;
    upstream.on('end', () => {
      // The app closed its end (e.g. its keep-alive timeout): so does the client's connection, after the bytes.
      ended = true;
      if (!this.handedOver) this.client.end();
    });
    upstream.on('close', () => {
      clearTimeout(this.responseTimer);
      // Cut (reset, or dropConnections before a pause): a response may be incomplete, so the client is cut too.
      if (!ended && !this.handedOver) this.client.destroy();
    });
    upstream.on('error', noop);
  }

  /**
   * Bytes from the sandbox, byte for byte to the client. Whether the client's socket took them at once (the read
   * buffer can then be used again) and whether reading must wait for the client (relay-reads.ts).
   */
  private fromUpstream(bytes: Buffer): { consumed: boolean; pause: boolean } {
    if (this.waitingFor) {
      this.waitingFor = undefined;
      clearTimeout(this.responseTimer);
    }
    if (this.raw && this.target) this.options.onActivity?.(this.target.sandboxId);
    const flowing = this.client.write(bytes);
    if (!flowing) this.client.once('drain', () => this.upstream?.resume());
    return { consumed: this.client.writableLength === 0, pause: !flowing };
  }

  private toUpstream(bytes: Buffer): void {
    const upstream = this.upstream!;
    if (!upstream.write(bytes) && !this.client.isPaused()) {
      this.client.pause();
      upstream.once('drain', () => this.client.resume());
    }
  }

  /** The same deadline as the full proxy: a response must begin within responseTimeoutMs of the whole request. */
  private armResponseTimer(): void {
    if (!this.waitingFor) return;
    const head = this.waitingFor;
    clearTimeout(this.responseTimer);
    this.responseTimer = setTimeout(() => {
      if (this.waitingFor !== head || this.handedOver) return;
      const seconds = this.options.responseTimeoutMs / 1000;
      writeErrorToSocket(
        head,
        this.client,
        gatewayError(
          'PREVIEW_TIMEOUT',
          `port ${this.target?.port} in sandbox ${this.target?.sandboxId} accepted the request but sent no response within ${seconds} s; check that the server is not stuck`,
        ),
      );
      this.upstream?.destroy();
    }, this.options.responseTimeoutMs);
    this.responseTimer.unref();
  }

  /**
   * Hands the connection to the full proxy at a request boundary. A connection into the sandbox that served
   * earlier requests is closed first (their responses are complete: clients send the next request after the
   * previous response, HTTP/1.1 pipelining aside).
   */
  private giveUp(): void {
    this.handedOver = true;
    clearTimeout(this.responseTimer);
    this.upstream?.destroy();
    this.client.off('data', this.onClientData);
    this.client.off('end', this.onClientEnd);
    this.client.off('close', this.onClientClose);
    this.client.off('error', noop);
    this.client.resume();
    const unread = this.pending;
    this.pending = Buffer.alloc(0);
    this.handOver(unread);
  }
}

interface LaneRequest {
  head: RequestHead;
  route: PreviewRoute;
  bodyLength: number;
}

/** Every place a request can carry a preview token, as one string (NUL never occurs in a field value). */
function credentialsOf({ headers }: RequestView): string {
  let all = `${headers.cookie}`;
  for (const name of TOKEN_HEADERS) all += `\0${headers[name]}`;
  return all;
}

function sameTarget(a: PreviewTarget, b: PreviewTarget): boolean {
  return a.sandboxId === b.sandboxId && a.address === b.address && a.port === b.port;
}

function noop(): void {}
