/**
 * How a Vite dev server is started so that it answers on the preview domain.
 *
 * Vite rejects requests whose Host header is not localhost, an IP or listed in `server.allowedHosts` (the DNS
 * rebinding fix of January 2025: vite 4.5.6, 5.4.12, 6.0.9 and later). Vite >= 6.1.0 appends the value of the
 * environment variable `__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS` to an `allowedHosts` array while resolving the
 * server options (packages/vite/src/node/server/index.ts, resolveServerOptions; checked in the published 6.1.0,
 * 6.2.0, 6.3.0, 6.4.1, 7.0.0, 7.3.0 and 8.3.8, absent from 5.4.x and 6.0.x up to 6.0.15). A value starting with
 * a dot matches the domain and all its subdomains. For those versions den runs the project's own `vite` CLI.
 * For older or unknown versions den starts Vite through its JavaScript API instead, with an inline plugin whose
 * `config` hook adds the same entry: that works in every Vite since 2.
 */
import type { Step } from './types.js';

export const VITE_DEFAULT_PORT = 5173;
const ALLOWED_HOSTS_ENV = '__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS';
const FIRST_VERSION_WITH_ENV: readonly [number, number] = [6, 1];

export interface ViteStartInput {
  port: number;
  previewDomain: string;
  /** the installed vite version (from the lockfile) or the lowest version package.json allows; undefined if neither */
  version: string | undefined;
  /** the project's `dev` script, whose extra arguments (mode, config file) are kept */
  devScript: string | undefined;
}

/** `preview.example.com` -> `.preview.example.com`: the form Vite reads as "this domain and its subdomains". */
export function allowedHostEntry(previewDomain: string): string {
  const domain = previewDomain.trim().replace(/^\.+/, '');
  return domain ? `.${domain}` : '';
}

export function viteHonoursAllowedHostsEnv(version: string | undefined): boolean {
  const match = version ? /^(\d+)\.(\d+)/.exec(version) : null;
  if (!match) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  const [wantMajor, wantMinor] = FIRST_VERSION_WITH_ENV;
  return major > wantMajor || (major === wantMajor && minor >= wantMinor);
}

/** Lowest version a package.json range admits, for plain ranges (`^5.4.0`, `~6.2.1`, `>=6.1`, `6.3.0`). */
export function lowestVersionInRange(range: string | undefined): string | undefined {
  const match = range ? /^\s*(?:\^|~|>=|=|v)?\s*(\d+\.\d+(?:\.\d+)?)\s*$/.exec(range) : null;
  return match?.[1];
}

const FLAGS_DEN_SETS = new Set(['--host', '--port', '--strictPort', '--open']);

/**
 * The arguments of a dev script that is a single `vite` command (`vite`, `vite dev --mode staging`), minus the
 * flags den sets itself; undefined when the script does something else (chained commands, another tool).
 */
export function viteScriptArgs(devScript: string | undefined): string[] | undefined {
  if (!devScript || /[;&|<>`$]/.test(devScript)) return undefined;
  const [command, ...rest] = devScript.trim().split(/\s+/);
  if (command !== 'vite') return undefined;
  const args: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    const [flag, inlineValue] = arg.split('=', 2);
    if (FLAGS_DEN_SETS.has(flag!)) {
      const next = rest[i + 1];
      const takesValue = flag === '--host' || flag === '--port' || flag === '--open';
      if (inlineValue === undefined && takesValue && next !== undefined && !next.startsWith('-')) i++;
      continue;
    }
    args.push(arg);
  }
  return args;
}

function optionValue(args: string[], long: string, short: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg.startsWith(`${long}=`)) return arg.slice(long.length + 1);
    if (arg === long || arg === short) return args[i + 1];
  }
  return undefined;
}

/** The program `node --input-type=module -e` runs for Vite versions that ignore the environment variable. */
function launcherScript(port: number, configFile: string | undefined, mode: string | undefined): string {
  const inline = {
    ...(configFile ? { configFile } : {}),
    ...(mode ? { mode } : {}),
    server: { host: '0.0.0.0', port, strictPort: true },
  };
  return [
    "const { createServer } = await import('vite');",
    `const extraHost = process.env.${ALLOWED_HOSTS_ENV};`,
    `const inline = ${JSON.stringify(inline)};`,
    'inline.plugins = [{',
    "  name: 'den-preview-allowed-hosts',",
    '  config(config) {',
    '    const server = (config.server ??= {});',
    '    if (extraHost && server.allowedHosts !== true) server.allowedHosts = [...(server.allowedHosts ?? []), extraHost];',
    '  },',
    '}];',
    'const server = await createServer(inline);',
    'await server.listen();',
    'server.printUrls?.();',
  ].join('\n');
}

export function viteStartStep({ port, previewDomain, version, devScript }: ViteStartInput): Step {
  const hostEntry = allowedHostEntry(previewDomain);
  const env: Record<string, string> = hostEntry ? { [ALLOWED_HOSTS_ENV]: hostEntry } : {};
  const scriptArgs = viteScriptArgs(devScript) ?? [];
  if (viteHonoursAllowedHostsEnv(version)) {
    return {
      argv: ['node_modules/.bin/vite', ...scriptArgs, '--host', '0.0.0.0', '--port', String(port), '--strictPort'],
      env,
    };
  }
  const script = launcherScript(
    port,
    optionValue(scriptArgs, '--config', '-c'),
    optionValue(scriptArgs, '--mode', '-m'),
  );
  return { argv: ['node', '--input-type=module', '-e', script], env };
}
