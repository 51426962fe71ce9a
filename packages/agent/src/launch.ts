import { type Stats, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { DenError, type PtySize } from './contract.js';
import type { UserDirectory, UserInfo } from './users.js';

/** A validated ProcessSpec with everything resolved: the executable's path, cwd, user and full environment. */
export interface LaunchPlan {
  /** absolute path of the executable, found through PATH the way execvp would */
  file: string;
  /** argv as requested; argv[0] stays what the caller wrote */
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  user: UserInfo;
  pty: PtySize | undefined;
  timeoutMs: number;
  background: boolean;
  tag: string | undefined;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MAX_PTY_DIMENSION = 10_000;

export interface LaunchContext {
  users: UserDirectory;
  sandboxEnv: Record<string, string>;
}

/**
 * Turns a request's ProcessSpec into a LaunchPlan, or throws the DenError the caller should see. The checks run
 * here, before spawning, because a failed exec inside a forked child (node-pty) is only visible as output.
 */
export function planLaunch(raw: unknown, ctx: LaunchContext): LaunchPlan {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw invalid('the process spec must be a JSON object such as {"cmd":["ls","-l"]}');
  }
  const spec = raw as Record<string, unknown>;
  const argv = checkCmd(spec.cmd);
  const user = ctx.users.resolve(optionalString(spec.user, 'user'));
  const pty = checkPty(spec.pty);
  const env = buildEnv(user, ctx.sandboxEnv, checkEnv(spec.env), pty !== undefined);
  const cwd = resolveCwd(optionalString(spec.cwd, 'cwd'), user);
  const file = resolveExecutable(argv[0] as string, env.PATH ?? DEFAULT_PATH, cwd, user);
  return {
    file,
    argv,
    cwd,
    env,
    user,
    pty,
    timeoutMs: checkTimeout(spec.timeoutMs),
    background: spec.background === true,
    tag: optionalString(spec.tag, 'tag'),
  };
}

/** Defaults < sandbox env < request env, the precedence a login shell would give. */
export function buildEnv(
  user: UserInfo,
  sandboxEnv: Record<string, string>,
  requestEnv: Record<string, string>,
  pty: boolean,
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: user.shell,
    LANG: 'C.UTF-8',
  };
  if (pty) env.TERM = 'xterm-256color';
  Object.assign(env, sandboxEnv, requestEnv);
  return env;
}

function checkCmd(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid('cmd must be a non-empty array of strings, such as ["bash","-lc","echo hi"]');
  }
  for (const [i, arg] of value.entries()) {
    if (typeof arg !== 'string') throw invalid(`cmd[${i}] must be a string, not ${typeof arg}`);
    if (arg.includes('\0')) throw invalid(`cmd[${i}] must not contain NUL bytes`);
  }
  if (value[0] === '') throw invalid('cmd[0] is empty: give the program to run');
  return value as string[];
}

function checkEnv(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid('env must be an object of strings');
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (!key || key.includes('=') || key.includes('\0')) throw invalid(`env name "${key}" is not a valid name`);
    if (typeof v !== 'string') throw invalid(`env.${key} must be a string, not ${typeof v}`);
    if (v.includes('\0')) throw invalid(`env.${key} must not contain NUL bytes`);
    out[key] = v;
  }
  return out;
}

function checkPty(value: unknown): PtySize | undefined {
  if (value === undefined || value === null || value === false) return undefined;
  return checkPtySize(value, 'pty');
}

export function checkPtySize(value: unknown, field: string): PtySize {
  const size = (value ?? {}) as Partial<Record<keyof PtySize, unknown>>;
  const ok = (n: unknown): n is number =>
    Number.isInteger(n) && (n as number) > 0 && (n as number) <= MAX_PTY_DIMENSION;
  if (typeof value !== 'object' || !ok(size.cols) || !ok(size.rows)) {
    throw invalid(
      `${field} must be {cols, rows} with whole numbers from 1 to ${MAX_PTY_DIMENSION}, such as {"cols":80,"rows":24}`,
    );
  }
  return { cols: size.cols, rows: size.rows };
}

function checkTimeout(value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalid('timeoutMs must be a number of milliseconds >= 0 (0 means no timeout)');
  }
  // setTimeout fires at once above 2^31-1 ms; anything that long means "no timeout" in practice.
  return value > 2_147_483_647 ? 0 : Math.ceil(value);
}

function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(`${field} must be a string, not ${typeof value}`);
  if (value.includes('\0')) throw invalid(`${field} must not contain NUL bytes`);
  return value;
}

/** The requested cwd (relative ones are taken from the user's home), or the home, or / when the home is missing. */
function resolveCwd(requested: string | undefined, user: UserInfo): string {
  if (requested === undefined || requested === '') {
    const home = statOrUndefined(user.home);
    return home?.isDirectory() && permits(home, user, 0o1) ? user.home : '/';
  }
  const cwd = resolve(user.home, requested);
  const st = statOrUndefined(cwd);
  if (!st) {
    throw new DenError(
      'FILE_NOT_FOUND',
      `working directory ${cwd} does not exist in the sandbox; create it first or pick another cwd`,
    );
  }
  if (!st.isDirectory()) throw new DenError('NOT_A_DIRECTORY', `working directory ${cwd} is not a directory`);
  if (!permits(st, user, 0o1)) {
    throw new DenError(
      'PERMISSION_DENIED',
      `user '${user.name}' may not enter working directory ${cwd}; pick a cwd the user can access`,
    );
  }
  return cwd;
}

/** execvp's search: names with a slash are taken as paths, others are looked up in PATH. */
function resolveExecutable(name: string, pathVar: string, cwd: string, user: UserInfo): string {
  if (name.includes('/')) {
    const file = isAbsolute(name) ? name : resolve(cwd, name);
    const st = statOrUndefined(file);
    if (!st) throw notFound(name, `${file} does not exist`);
    if (!st.isFile()) throw notFound(name, `${file} is not a regular file`);
    if (!permits(st, user, 0o1)) throw notExecutable(file, user);
    return file;
  }
  let denied: string | undefined;
  for (const dir of pathVar.split(':')) {
    const file = join(dir || '.', name);
    const st = statOrUndefined(isAbsolute(file) ? file : resolve(cwd, file));
    if (!st?.isFile()) continue;
    if (permits(st, user, 0o1)) return isAbsolute(file) ? file : resolve(cwd, file);
    denied ??= file;
  }
  if (denied) throw notExecutable(denied, user);
  throw notFound(name, `searched PATH=${pathVar}; install it or give its absolute path`);
}

/**
 * Permission check by mode bits, as the kernel does for the uid and primary gid the child runs with (children get
 * no supplementary groups). Root passes when any of the bits is set, as with CAP_DAC_OVERRIDE for exec.
 */
function permits(st: Stats, user: UserInfo, bit: number): boolean {
  const any = bit | (bit << 3) | (bit << 6);
  if (user.uid === 0) return st.isDirectory() || (st.mode & any) !== 0;
  if (st.uid === user.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === user.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

/** Exec planning stats several paths per request; throwIfNoEntry avoids building an exception for each miss. */
function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function notFound(name: string, hint: string): DenError {
  return new DenError('EXECUTABLE_NOT_FOUND', `executable not found in the sandbox: ${name} (${hint})`);
}

function notExecutable(file: string, user: UserInfo): DenError {
  return new DenError(
    'EXECUTABLE_NOT_FOUND',
    `${file} is not executable by user '${user.name}'; make it executable (chmod +x ${file}) or run it through its interpreter`,
  );
}

function invalid(message: string): DenError {
  return new DenError('INVALID_ARGUMENT', message);
}
