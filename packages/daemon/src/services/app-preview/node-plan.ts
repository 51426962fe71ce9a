/** Plans for projects with a package.json: Vite apps, and Node servers (Express, Fastify, Koa, any `npm start`). */
import { DenError } from '@den/shared';
import { npmInstallSteps } from './npm-install.js';
import { portFromCommandLine, portFromDotenv, portFromNodeSource, portFromViteConfig } from './port-hints.js';
import type { AppPlan, DetectOptions, ProjectFiles } from './types.js';
import { lowestVersionInRange, VITE_DEFAULT_PORT, viteStartStep } from './vite.js';

/** Express, Koa and most Node servers document 3000 as their default `PORT`. */
export const NODE_DEFAULT_PORT = 3000;
const ENTRY_CANDIDATES = ['server.js', 'index.js', 'app.js', 'main.js', 'server.mjs', 'index.mjs', 'app.mjs'];
const VITE_CONFIGS = ['vite.config.js', 'vite.config.ts', 'vite.config.mjs', 'vite.config.mts', 'vite.config.cjs'];

interface PackageJson {
  main?: unknown;
  scripts?: Record<string, unknown>;
  dependencies?: Record<string, unknown>;
  devDependencies?: Record<string, unknown>;
  optionalDependencies?: Record<string, unknown>;
}

export function parsePackageJson(text: string): PackageJson {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new DenError('INVALID_ARGUMENT', `the project's package.json is not valid JSON (${(err as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new DenError('INVALID_ARGUMENT', "the project's package.json must hold a JSON object");
  }
  return parsed as PackageJson;
}

function script(pkg: PackageJson, name: string): string | undefined {
  const value = pkg.scripts?.[name];
  return typeof value === 'string' && value.trim() ? value : undefined;
}

function dependencyRange(pkg: PackageJson, name: string): string | undefined {
  for (const deps of [pkg.dependencies, pkg.devDependencies, pkg.optionalDependencies]) {
    const range = deps?.[name];
    if (typeof range === 'string') return range;
  }
  return undefined;
}

function hasDependencies(pkg: PackageJson): boolean {
  return [pkg.dependencies, pkg.devDependencies, pkg.optionalDependencies].some(
    (deps) => deps && Object.keys(deps).length > 0,
  );
}

/** The version package-lock.json pins for a package (lockfile v2/v3 `packages`, v1 `dependencies`). */
function lockedVersion(lockText: string | undefined, name: string): string | undefined {
  if (!lockText) return undefined;
  try {
    const lock = JSON.parse(lockText) as {
      packages?: Record<string, { version?: unknown }>;
      dependencies?: Record<string, { version?: unknown }>;
    };
    const version = lock.packages?.[`node_modules/${name}`]?.version ?? lock.dependencies?.[name]?.version;
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined;
  }
}

async function firstExisting(project: ProjectFiles, files: Set<string>, candidates: string[]) {
  for (const path of candidates) {
    if (!files.has(path)) continue;
    const text = await project.read(path);
    if (text !== undefined) return { path, text };
  }
  return undefined;
}

function usesVite(pkg: PackageJson): boolean {
  if (dependencyRange(pkg, 'vite') === undefined) return false;
  // A server that merely bundles with Vite (e.g. `start: node server.js`, `build: vite build`) is a Node app.
  const dev = script(pkg, 'dev');
  const start = script(pkg, 'start');
  return /\bvite\b/.test(dev ?? '') || !start || /\bvite\b/.test(start);
}

export async function planNodeApp(
  project: ProjectFiles,
  files: Set<string>,
  packageJsonText: string,
  opts: DetectOptions,
): Promise<AppPlan> {
  const pkg = parsePackageJson(packageJsonText);
  const lockPath = ['package-lock.json', 'npm-shrinkwrap.json'].find((f) => files.has(f));
  const lockText = lockPath ? await project.read(lockPath) : undefined;
  const install = hasDependencies(pkg)
    ? npmInstallSteps({ cacheDir: opts.cacheDir, hasLockfile: lockText !== undefined })
    : [];

  if (usesVite(pkg)) {
    const devScript = script(pkg, 'dev') ?? script(pkg, 'start');
    const config = await firstExisting(project, files, VITE_CONFIGS);
    const port = portFromCommandLine(devScript) ?? portFromViteConfig(config?.text) ?? VITE_DEFAULT_PORT;
    const version = lockedVersion(lockText, 'vite') ?? lowestVersionInRange(dependencyRange(pkg, 'vite'));
    return {
      kind: 'vite',
      install,
      start: viteStartStep({ port, previewDomain: opts.previewDomain, version, devScript }),
      port,
    };
  }

  const main = typeof pkg.main === 'string' ? pkg.main.replace(/^\.\//, '') : undefined;
  const entry = await firstExisting(project, files, [...(main ? [main] : []), ...ENTRY_CANDIDATES]);
  const start = script(pkg, 'start');
  const dev = script(pkg, 'dev');
  const argv = start ? ['npm', 'start'] : dev ? ['npm', 'run', 'dev'] : entry ? ['node', entry.path] : undefined;
  if (!argv) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `den cannot tell how to start this Node project: its package.json has no "start" or "dev" script and there is ` +
        `no ${main ? `${main} (its "main") nor ` : ''}${ENTRY_CANDIDATES.join('/')}; add a "start" script`,
    );
  }
  const dotenv = files.has('.env') ? await project.read('.env') : undefined;
  const port =
    portFromCommandLine(start ?? dev) ?? portFromDotenv(dotenv) ?? portFromNodeSource(entry?.text) ?? NODE_DEFAULT_PORT;
  return {
    kind: 'node',
    install,
    // PORT and HOST are the conventions Express/Koa/Fastify examples and most Node servers read.
    start: { argv, env: { PORT: String(port), HOST: '0.0.0.0', npm_config_update_notifier: 'false' } },
    port,
  };
}
