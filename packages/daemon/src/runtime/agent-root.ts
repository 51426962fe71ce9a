import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DenError } from '@den/shared';
import { pathExists } from '../fs-util.js';
import { isAlive } from './cgroups.js';
import { AGENT_ENTRY, OOM_GUARD_ENTRY } from './oci-spec.js';
import { runBinary } from './run-binary.js';

/**
 * The directory bind-mounted read-only at /.den in every sandbox:
 *
 *   bin/node      the host's Node binary (process.execPath)
 *   bin/tini      tini-static, PID 1
 *   guard/oom-guard.mjs   runsc's in-sandbox OOM killer (oom-guard.ts), loaded into the agent's process
 *   lib/          every shared library of node and of the agent's native addons (ldd), and the dynamic loader
 *                 ld-linux-x86-64.so.2: node is started through it with --library-path, so it never reads the
 *                 image's libc (works in musl images and images without node)
 *   agent/packages/agent/{package.json,dist}   the built agent; entry agent/packages/agent/dist/agent.bundle.mjs (AGENT_ENTRY),
 *                                              and its static process starter dist/den-spawn (SPAWNER_ENTRY)
 *   agent/node_modules/<dep>                   the agent's runtime dependency closure (@den/shared, node-pty, ...),
 *                                              found by Node walking up from the agent's dist to agent/node_modules
 *
 * The directory name is a hash of everything in it (node/tini/library identity and the agent's file contents), so
 * a rebuilt agent or an upgraded node gets a new directory while running sandboxes keep the one they mounted.
 * It is built in a temporary directory and renamed into place, so a crash never leaves a half-built root under
 * its final name, and concurrent builders agree on one result.
 */

/** Bumped when the layout above changes, so an old directory with the same inputs is not reused. */
const LAYOUT_VERSION = 'den-agent-root-2';
const LOADER = 'ld-linux-x86-64.so.2';

export interface AgentRootOptions {
  /** default process.execPath */
  nodeBinary?: string;
  /** default /usr/bin/tini-static */
  tiniBinary?: string;
}

interface FileEntry {
  /** absolute source path */
  src: string;
  /** destination relative to the agent root */
  dest: string;
  mode: number;
}

interface PackageJson {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Builds (once) and returns the agent root for the repository's current agent build. */
export async function ensureAgentRoot(
  agentRootsDir: string,
  repoRoot: string,
  options: AgentRootOptions = {},
): Promise<string> {
  const nodeBinary = options.nodeBinary ?? process.execPath;
  const tiniBinary = options.tiniBinary ?? '/usr/bin/tini-static';
  const agentPkgDir = join(repoRoot, 'packages', 'agent');
  const entry = join(agentPkgDir, 'dist', 'agent.bundle.mjs');
  try {
    await stat(entry);
  } catch {
    throw new DenError('INTERNAL', `den's agent is not built (${entry} is missing); run \`npm run build\` first`);
  }

  const agentFiles = await agentTree(agentPkgDir, repoRoot);
  const nativeAddons = agentFiles.filter((f) => f.src.endsWith('.node')).map((f) => f.src);
  const libs = await sharedLibraries([nodeBinary, ...nativeAddons]);
  const files: FileEntry[] = [
    { src: nodeBinary, dest: 'bin/node', mode: 0o755 },
    { src: tiniBinary, dest: 'bin/tini', mode: 0o755 },
    ...libs.map((l) => ({ src: l, dest: `lib/${basename(l)}`, mode: 0o755 })),
    { src: fileURLToPath(new URL('./oom-guard.js', import.meta.url)), dest: OOM_GUARD_ENTRY, mode: 0o644 },
    ...agentFiles,
  ];

  const hash = await hashInputs(files);
  const finalDir = join(agentRootsDir, hash);
  if (await pathExists(join(finalDir, AGENT_ENTRY))) return finalDir;

  await mkdir(agentRootsDir, { recursive: true });
  await removeStaleTemps(agentRootsDir);
  const tmp = join(agentRootsDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(tmp, { mode: 0o755 });
    for (const f of files) {
      const dest = join(tmp, f.dest);
      await mkdir(dirname(dest), { recursive: true, mode: 0o755 });
      await copyFile(f.src, dest);
      await chmod(dest, f.mode);
    }
    await chmod(tmp, 0o755);
    try {
      await rename(tmp, finalDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // another builder won the race with the same content
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return finalDir;
}

/** The agent package and its runtime dependency closure, as files under agent/. */
async function agentTree(agentPkgDir: string, repoRoot: string): Promise<FileEntry[]> {
  const files: FileEntry[] = [];
  const agentDest = 'agent/packages/agent';
  files.push({ src: join(agentPkgDir, 'package.json'), dest: `${agentDest}/package.json`, mode: 0o644 });
  for (const f of await walk(join(agentPkgDir, 'dist'), builtFileFilter)) {
    // den-spawn, the agent's native process starter, is the one executable
    const mode = (await stat(f)).mode & 0o111 ? 0o755 : 0o644;
    files.push({ src: f, dest: `${agentDest}/dist/${relative(join(agentPkgDir, 'dist'), f)}`, mode });
  }

  const packagesDir = await realpath(join(repoRoot, 'packages'));
  const placed = new Map<string, string>(); // package name -> real source dir
  const queue: { name: string; from: string }[] = (await dependencyNames(agentPkgDir)).map((name) => ({
    name,
    from: agentPkgDir,
  }));
  while (queue.length > 0) {
    const { name, from } = queue.shift() as { name: string; from: string };
    const dir = await resolvePackageDir(name, from);
    if (!dir) {
      throw new DenError('INTERNAL', `agent dependency ${name} is not installed (from ${from}); run \`npm install\``);
    }
    const real = await realpath(dir);
    const seen = placed.get(name);
    if (seen === real) continue;
    if (seen) {
      throw new DenError('INTERNAL', `agent dependency ${name} resolves to two copies (${seen}, ${real}); dedupe them`);
    }
    placed.set(name, real);
    const dest = `agent/node_modules/${name}`;
    const isWorkspace = real.startsWith(packagesDir + sep);
    if (isWorkspace) {
      files.push({ src: join(real, 'package.json'), dest: `${dest}/package.json`, mode: 0o644 });
      for (const f of await walk(join(real, 'dist'), builtFileFilter)) {
        files.push({ src: f, dest: `${dest}/dist/${relative(join(real, 'dist'), f)}`, mode: 0o644 });
      }
    } else {
      const native = await pathExists(join(real, 'binding.gyp'));
      for (const f of await walk(real, (rel, isDir) => externalFileFilter(rel, isDir, native))) {
        const mode = (await stat(f)).mode & 0o111 ? 0o755 : 0o644;
        files.push({ src: f, dest: `${dest}/${relative(real, f)}`, mode });
      }
    }
    for (const dep of await dependencyNames(real)) queue.push({ name: dep, from: real });
  }
  return files;
}

/** Compiled output of a workspace package without its tests, type declarations and build info. */
function builtFileFilter(rel: string, isDir: boolean): boolean {
  if (isDir) return rel !== 'test';
  return !/\.(d\.ts|d\.ts\.map|map|tsbuildinfo)$/.test(rel) && !rel.endsWith('.tsbuildinfo');
}

/**
 * Files of an installed npm package that are needed at run time. For native addons (binding.gyp) the C sources,
 * vendored dependencies and build intermediates are left out; only the compiled `.node` files (and node-pty's
 * spawn-helper) from build/ and prebuilds for this platform are kept.
 */
function externalFileFilter(rel: string, isDir: boolean, native: boolean): boolean {
  const parts = rel.split('/');
  const top = parts[0] ?? '';
  if (top === 'node_modules') return false; // nested deps are resolved separately
  if (isDir) {
    if (parts.length === 1 && ['test', 'tests', '.github', 'docs', 'example', 'examples'].includes(top)) return false;
    if (native && parts.length === 1 && ['src', 'deps', 'third_party', 'node-addon-api', 'scripts'].includes(top)) {
      return false;
    }
    if (top === 'prebuilds' && parts.length === 2 && parts[1] !== `${process.platform}-${process.arch}`) return false;
    return true;
  }
  if (/\.(d\.ts|d\.mts|d\.cts|map|md|markdown)$/.test(rel)) return false;
  if (native && top === 'build') {
    const name = parts[parts.length - 1] ?? '';
    return name.endsWith('.node') || name === 'spawn-helper';
  }
  return true;
}

async function dependencyNames(pkgDir: string): Promise<string[]> {
  const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as PackageJson;
  return [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
}

/** Node's resolution of a bare package name: the nearest node_modules/<name> walking up from `from`. */
async function resolvePackageDir(name: string, from: string): Promise<string | undefined> {
  let dir = from;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (await pathExists(join(candidate, 'package.json'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Files under `root` (following symlinks), filtered by path relative to root. Sorted for a stable hash. */
async function walk(root: string, keep: (rel: string, isDir: boolean) => boolean): Promise<string[]> {
  const out: string[] = [];
  async function visit(dir: string): Promise<void> {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split(sep).join('/');
      const st = await stat(abs).catch(() => undefined); // follows symlinks; dangling ones are skipped
      if (!st) continue;
      if (st.isDirectory()) {
        if (keep(rel, true)) await visit(abs);
      } else if (st.isFile() && keep(rel, false)) {
        out.push(abs);
      }
    }
  }
  if (await pathExists(root)) await visit(root);
  return out;
}

/** The shared libraries (and the dynamic loader) the given ELF files load, from `ldd`. */
export async function sharedLibraries(binaries: string[]): Promise<string[]> {
  const libs = new Map<string, string>(); // basename -> path
  for (const bin of binaries) {
    const { stdout } = await runBinary('ldd', [bin], { runtime: 'ldd', timeoutMs: 15_000 });
    for (const line of stdout.split('\n')) {
      const t = line.trim();
      if (!t || t.startsWith('linux-vdso') || t.includes('statically linked')) continue;
      if (t.includes('=> not found')) throw new DenError('INTERNAL', `${bin} needs a library that is missing: ${t}`);
      const m = /=>\s*(\/\S+)/.exec(t) ?? /^(\/\S+)\s+\(/.exec(t);
      if (m?.[1]) libs.set(basename(m[1]), m[1]);
    }
  }
  if (!libs.has(LOADER))
    throw new DenError('INTERNAL', `ldd found no ${LOADER} for ${binaries[0]}; den needs x86-64 glibc node`);
  return [...libs.values()].sort();
}

/**
 * Content hash of the inputs. Host binaries (node, tini, libraries; large and changed only by package upgrades)
 * are identified by path, size and mtime; the agent's files by their bytes.
 */
async function hashInputs(files: FileEntry[]): Promise<string> {
  const h = createHash('sha256');
  h.update(`${LAYOUT_VERSION}\n`);
  for (const f of files) {
    const st = await stat(f.src);
    h.update(`${f.dest}\0${f.mode}\0`);
    if (f.dest.startsWith('agent/') || f.dest.startsWith('guard/')) h.update(await readFile(f.src));
    else h.update(`${await realpath(f.src)}\0${st.size}\0${st.mtimeMs}\0${st.ino}`);
    h.update('\n');
  }
  return h.digest('hex').slice(0, 32);
}

/** Temporary build directories of builders that died (their pid is in the name). */
async function removeStaleTemps(agentRootsDir: string): Promise<void> {
  for (const name of await readdir(agentRootsDir).catch(() => [] as string[])) {
    const m = /^\.tmp-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !(await isAlive(pid))) {
      await rm(join(agentRootsDir, name), { recursive: true, force: true });
    }
  }
}
