import type { ClientRequest } from 'node:http';
import type { Socket } from 'node:net';

export const CONNECT_TIMEOUT = 'DEN_CONNECT_TIMEOUT';
export const RESPONSE_TIMEOUT = 'DEN_RESPONSE_TIMEOUT';

/**
 * Two deadlines for a request into a sandbox: the TCP connect (a paused or frozen sandbox never answers the SYN),
 * then the response headers, counted from when the whole request has been sent so that a slow upload is not
 * mistaken for a slow server. A missed deadline destroys the request with an error whose `code` is
 * `DEN_CONNECT_TIMEOUT` or `DEN_RESPONSE_TIMEOUT`. Once headers arrive nothing is timed: event streams and
 * WebSockets may stay quiet for hours. Returns the function that stops the clock (call it on response or upgrade).
 */
export function watchUpstreamTimeouts(upstream: ClientRequest, connectMs: number, responseMs: number): () => void {
  let timer: NodeJS.Timeout | undefined;
  let phase: 'connecting' | 'sending' | 'waiting' | 'done' = 'sending';
  let requestSent = false;

  const arm = (next: typeof phase, ms: number, code: string) => {
    clearTimeout(timer);
    phase = next;
    timer = setTimeout(() => upstream.destroy(Object.assign(new Error(code), { code })), ms);
    timer.unref();
  };
  const update = () => {
    if (phase === 'done' || phase === 'waiting') return;
    const socket = upstream.socket;
    if (!socket || socket.connecting) {
      if (phase !== 'connecting') arm('connecting', connectMs, CONNECT_TIMEOUT);
    } else if (requestSent) {
      arm('waiting', responseMs, RESPONSE_TIMEOUT);
    } else {
      clearTimeout(timer);
      phase = 'sending';
    }
  };
  const stop = () => {
    clearTimeout(timer);
    phase = 'done';
  };

  upstream.on('socket', (socket: Socket) => {
    if (socket.connecting) socket.once('connect', update);
    update();
  });
  upstream.on('finish', () => {
    requestSent = true;
    update();
  });
  upstream.once('close', stop);
  update();
  return stop;
}
