/** Process and file types shared by the agent, the daemon's API and the SDK. */

export interface PtySize {
  cols: number;
  rows: number;
}

/** What to run. `cmd` is an argv array; use ['bash', '-lc', script] for shell syntax. */
export interface ProcessSpec {
  cmd: string[];
  /** extra environment, merged over the sandbox's env and the user's defaults (HOME, USER, PATH, ...) */
  env?: Record<string, string>;
  /** working directory; defaults to the user's home */
  cwd?: string;
  /** user name or numeric uid inside the sandbox; defaults to the image's user ("user" in the base image) */
  user?: string;
  /** kill the process (SIGKILL to its process group) after this many ms; 0 or absent = no timeout */
  timeoutMs?: number;
  /** run under a pseudo-terminal of this size; output then arrives as STDOUT frames only */
  pty?: PtySize;
  /** keep running (and buffer output) when the client stream closes; reconnect with `connect(pid)` */
  background?: boolean;
  /** optional tag, shown by `processes list` */
  tag?: string;
}

export interface ExitInfo {
  /** exit code, or null when killed by a signal */
  exitCode: number | null;
  signal: string | null;
  /** true when den killed the process because `timeoutMs` passed */
  timedOut: boolean;
}

export interface ProcessInfo {
  pid: number;
  cmd: string[];
  cwd: string;
  user: string;
  tag?: string;
  pty: boolean;
  background: boolean;
  startedAt: string;
  /** present once it ended; ended background processes stay listed until read or pruned */
  exit?: ExitInfo;
}

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

export interface FileEntry {
  name: string;
  /** absolute path inside the sandbox */
  path: string;
  type: FileType;
  size: number;
  /** permission bits, e.g. 0o644 */
  mode: number;
  owner: string;
  group: string;
  modifiedAt: string;
  /** target of a symlink */
  symlinkTarget?: string;
}
