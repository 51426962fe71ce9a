/**
 * The frame format of every process stream: agent <-> daemon (HTTP/2 stream bodies) and daemon <-> client
 * (streamed exec responses, WebSocket messages). One frame is `[type: u8][length: u32 big-endian][payload]`.
 * JSON frames carry UTF-8 JSON; data frames carry raw bytes. The daemon relays agent frames to clients as they
 * are, so the format is defined once here.
 */
export const FrameType = {
  /** client -> agent, first frame of a new process: JSON ProcessSpec */
  SPEC: 1,
  /** client -> agent: bytes for the process's stdin (or the PTY's input) */
  STDIN: 2,
  /** client -> agent: close stdin (empty payload) */
  STDIN_EOF: 3,
  /** client -> agent: JSON {cols, rows} for a PTY */
  RESIZE: 4,
  /** client -> agent: JSON {signal} e.g. "SIGTERM" */
  SIGNAL: 5,
  /** agent -> client: JSON {pid} once the process runs */
  STARTED: 16,
  /** agent -> client: stdout bytes (PTY output arrives as STDOUT too) */
  STDOUT: 17,
  /** agent -> client: stderr bytes */
  STDERR: 18,
  /** agent -> client: JSON ExitInfo, always the last frame of a process that started */
  EXIT: 19,
  /** agent -> client: JSON ErrorBody, the last frame when the process could not start or the stream failed */
  ERROR: 20,
} as const;

export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  type: number;
  payload: Uint8Array;
}

export const FRAME_HEADER_BYTES = 5;
/** Upper bound for one frame, so a corrupt length cannot make a reader buffer gigabytes. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export function encodeFrame(type: number, payload: Uint8Array | string = new Uint8Array(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.byteLength);
  out.writeUInt8(type, 0);
  out.writeUInt32BE(body.byteLength, 1);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

export function encodeJsonFrame(type: number, value: unknown): Buffer {
  return encodeFrame(type, JSON.stringify(value));
}

export function decodeJson<T>(frame: Frame): T {
  return JSON.parse(Buffer.from(frame.payload).toString('utf8')) as T;
}

/**
 * Incremental decoder: push arbitrary chunks, get whole frames back. Keeps at most one partial frame buffered.
 */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Uint8Array): Frame[] {
    this.pending = this.pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    while (this.pending.length >= FRAME_HEADER_BYTES) {
      const length = this.pending.readUInt32BE(1);
      if (length > MAX_FRAME_BYTES) throw new Error(`frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES} limit`);
      if (this.pending.length < FRAME_HEADER_BYTES + length) break;
      const type = this.pending.readUInt8(0);
      const payload = this.pending.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
      frames.push({ type, payload });
      this.pending = this.pending.subarray(FRAME_HEADER_BYTES + length);
    }
    return frames;
  }

  /** True when a partial frame is buffered (a stream that ends now was cut off). */
  get hasPartial(): boolean {
    return this.pending.length > 0;
  }
}
