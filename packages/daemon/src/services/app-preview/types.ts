/** The plan a live preview follows to install and start a project inside a sandbox. */

export type AppKind = 'vite' | 'node' | 'fastapi' | 'flask' | 'python';

/** One command, run with cwd = the project directory as the sandbox user; `env` is added to the sandbox's. */
export interface Step {
  argv: string[];
  env: Record<string, string>;
}

export interface AppPlan {
  kind: AppKind;
  /** run in order; the preview fails at the first step that exits non-zero */
  install: Step[];
  /** the dev server, started in the background; it listens on 0.0.0.0:`port` */
  start: Step;
  port: number;
}

/** Read access to the project directory; paths are relative to it, with `/` separators. */
export interface ProjectFiles {
  /** the files at the top level and one directory down (deeper entries may be present and are ignored) */
  list(): Promise<string[]>;
  /** the file's text, or undefined when it does not exist */
  read(path: string): Promise<string | undefined>;
}

export interface DetectOptions {
  /** previews are served as `<name>.<previewDomain>`; dev servers that check the Host header must accept it */
  previewDomain: string;
  /** where the sandbox sees the shared package cache (scripts/package-cache.sh): `npm/` and `pip/` inside */
  cacheDir: string;
}
