/**
 * Wire details of the agent's HTTP/2 API that both the server and its client need. Kept free of imports so the
 * client can use them without loading the server's modules.
 */

/** Content type of a response body made of frames (see @den/shared frames.ts). */
export const FRAMES_CONTENT_TYPE = 'application/vnd.den.frames';
export const JSON_CONTENT_TYPE = 'application/json';

/** Default socket path inside the sandbox; the daemon mounts a host directory at /run/den. */
export const DEFAULT_AGENT_SOCKET = '/run/den/agent.sock';

/** Output kept for a background process while no client is attached, replayed by `connect`. */
export const BACKGROUND_BUFFER_BYTES = 1024 * 1024;

/** Body of `GET /health`. */
export interface AgentHealth {
  version: string;
  pid: number;
  uptimeMs: number;
  /** processes currently running */
  processes: number;
}

/** One entry of `GET /ports`: a TCP socket listening inside the sandbox. */
export interface ListeningSocket {
  port: number;
  /** bound address: 0.0.0.0 or :: for every interface, 127.0.0.1 / ::1 for loopback only */
  address: string;
}

/** Content type of `GET /files/watch`: one JSON object per line. */
export const WATCH_CONTENT_TYPE = 'application/x-ndjson';

export type WatchEventType = 'create' | 'write' | 'remove' | 'rename' | 'chmod';

/** One line of `GET /files/watch`: a change, with the path relative to the watched directory. */
export interface WatchEvent {
  type: WatchEventType;
  name: string;
}

/** The last line of `GET /files/watch` when the watch broke (e.g. the directory was removed). */
export interface WatchError {
  type: 'error';
  error: { code: string; message: string };
}

/** One entry of `GET /connections`: a TCP endpoint that is not listening and not closed. */
export interface TcpConnection {
  local: string;
  remote: string;
  /** ESTABLISHED, TIME_WAIT, CLOSE_WAIT, ... */
  state: string;
}
