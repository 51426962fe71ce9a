import { UsageError } from './errors.js';

/** One side of `den cp`: a local path (`-` = stdin/stdout) or a path inside a sandbox (`REF:/abs/path`). */
export type CpLocation = { kind: 'local'; path: string } | { kind: 'remote'; ref: string; path: string };

/** A parsed `den cp SRC DST`: exactly one side is in a sandbox. */
export type CpPlan =
  | { direction: 'upload'; local: string; ref: string; remote: string }
  | { direction: 'download'; ref: string; remote: string; local: string };

/**
 * `REF:PATH` names a path in a sandbox when REF looks like a sandbox id or name (lowercase letters, digits,
 * hyphens) and comes before any slash, so local paths such as `./a:b` or `/tmp/x:y` stay local.
 */
const REMOTE = /^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?):(.*)$/;

export function parseCpLocation(arg: string): CpLocation {
  const m = REMOTE.exec(arg);
  if (!m) return { kind: 'local', path: arg };
  const ref = m[1]!;
  const path = m[2]!;
  if (!path.startsWith('/')) {
    throw new UsageError(
      `"${arg}" names a relative path in sandbox ${ref}: give an absolute path, e.g. ${ref}:/home/user/${path || 'file'}`,
    );
  }
  return { kind: 'remote', ref, path };
}

export function parseCpArgs(src: string, dst: string): CpPlan {
  const a = parseCpLocation(src);
  const b = parseCpLocation(dst);
  if (a.kind === 'local') {
    if (b.kind === 'local') {
      throw new UsageError(
        'neither path is in a sandbox: write one side as REF:/abs/path, e.g. den cp ./a.txt dev:/tmp/',
      );
    }
    return { direction: 'upload', local: a.path, ref: b.ref, remote: b.path };
  }
  if (b.kind === 'remote') {
    throw new UsageError('both paths are in sandboxes: copy through a local file, or run cp inside the sandbox');
  }
  return { direction: 'download', ref: a.ref, remote: a.path, local: b.path };
}

/** The last path segment, ignoring trailing slashes ("/a/b/" -> "b"). */
export function baseName(path: string): string {
  const parts = path.split('/').filter((p) => p.length > 0);
  return parts[parts.length - 1] ?? '';
}

/** `dir` + `/` + `name`, with exactly one slash between them. */
export function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}
