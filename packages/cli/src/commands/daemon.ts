import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DenClient } from '@den/sdk';
import { CliError } from '../errors.js';
import { formatAge, formatDuration, json, listing } from '../output.js';
import type { Context, JsonArgs } from '../program.js';
import { Spinner } from '../progress.js';

/** How long `den up` waits for /v1/health and `den down` for the process to exit. */
export const DAEMON_WAIT_MS = 30_000;
const POLL_MS = 100;

/**
 * The daemon's entry point in the same tree `npm run build` fills: packages/daemon/dist/src/main.js. This code runs
 * from packages/cli/dist/src/commands/daemon.js as tsc writes it, or from packages/cli/dist/den.bundle.mjs
 * (scripts/bundle-cli.mjs): the path relative to either, whichever exists.
 */
export function daemonEntry(): string {
  const fromTsc = fileURLToPath(new URL('../../../../daemon/dist/src/main.js', import.meta.url));
  const fromBundle = fileURLToPath(new URL('../../daemon/dist/src/main.js', import.meta.url));
  return existsSync(fromTsc) || !existsSync(fromBundle) ? fromTsc : fromBundle;
}

export function daemonFiles(home: string): { log: string; pid: string } {
  return { log: join(home, 'daemon.log'), pid: join(home, 'daemon.pid') };
}

/** `den up`: start the daemon detached, wait until it answers, print its URL. */
export async function up(ctx: Context): Promise<number> {
  const { home, listen, listenUrl } = ctx.config;
  const client = new DenClient({ url: listenUrl, requestTimeoutMs: 2000 });
  if (await isHealthy(client)) {
    ctx.stderr.write(`den daemon already running at ${listenUrl}\n`);
    ctx.stdout.write(`${listenUrl}\n`);
    return 0;
  }
  const files = daemonFiles(home);
  const existing = readPid(files.pid);
  let pid: number;
  let exitedWith: () => string | undefined;
  if (existing !== undefined && isDenDaemon(existing)) {
    // Started earlier and not answering yet (or bound elsewhere): wait for it rather than start a second one.
    pid = existing;
    exitedWith = () => (isAlive(pid) ? undefined : 'exited');
  } else {
    const entry = daemonEntry();
    if (!existsSync(entry)) {
      throw new CliError(`the den daemon is not built (${entry} is missing): run \`npm run build\` first`);
    }
    makeHome(home);
    const log = openSync(files.log, 'a');
    const child = spawn(process.execPath, [entry, '--home', home, '--listen', listen], {
      detached: true,
      stdio: ['ignore', log, log],
      env: process.env,
    });
    closeSync(log);
    let exit: string | undefined;
    child.once('exit', (code, signal) => {
      exit = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    });
    child.once('error', (err) => {
      exit = `could not start: ${err.message}`;
    });
    child.unref();
    if (child.pid === undefined) {
      await new Promise((resolve) => setImmediate(resolve));
      throw new CliError(`the den daemon ${exit ?? 'could not start'}`);
    }
    pid = child.pid;
    writeFileSync(files.pid, `${pid}\n`);
    exitedWith = () => exit;
  }

  const spinner = new Spinner(ctx.stderr, `starting den daemon (pid ${pid}, listen ${listen})`).start();
  const deadline = Date.now() + DAEMON_WAIT_MS;
  try {
    for (;;) {
      if (await isHealthy(client)) break;
      const exit = exitedWith();
      if (exit !== undefined) {
        rmSync(files.pid, { force: true });
        const last = lastLogLine(files.log);
        throw new CliError(
          `the den daemon ${exit} while starting; see ${files.log}${last ? `, which ends: ${last}` : ''}`,
        );
      }
      if (Date.now() > deadline) {
        throw new CliError(
          `the den daemon (pid ${pid}) did not answer at ${listenUrl} within ${DAEMON_WAIT_MS / 1000} s; ` +
            `see ${files.log}, and stop it with \`den down\``,
        );
      }
      await sleep(POLL_MS);
    }
  } finally {
    spinner.stop();
  }
  ctx.stderr.write(`den daemon started (pid ${pid}, log ${files.log})\n`);
  ctx.stdout.write(`${listenUrl}\n`);
  return 0;
}

/** `den down`: SIGTERM to the pid in the pidfile, then wait until the process is gone. */
export async function down(ctx: Context): Promise<number> {
  const { home, listenUrl } = ctx.config;
  const files = daemonFiles(home);
  const pid = readPid(files.pid);
  if (pid === undefined || !isDenDaemon(pid)) {
    if (pid !== undefined) rmSync(files.pid, { force: true });
    if (await isHealthy(new DenClient({ url: listenUrl, requestTimeoutMs: 2000 }))) {
      throw new CliError(
        `a den daemon answers at ${listenUrl} but ${files.pid} does not name it, so \`den up\` did not start it ` +
          '(or used another --home): stop it the way it was started',
      );
    }
    ctx.stderr.write('den daemon is not running\n');
    return 0;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') {
      rmSync(files.pid, { force: true });
      ctx.stderr.write('den daemon is not running\n');
      return 0;
    }
    throw new CliError(`cannot signal the den daemon (pid ${pid}): ${(err as Error).message}; run as its user`);
  }
  const spinner = new Spinner(ctx.stderr, `stopping den daemon (pid ${pid})`).start();
  const deadline = Date.now() + DAEMON_WAIT_MS;
  try {
    while (isAlive(pid)) {
      if (Date.now() > deadline) {
        throw new CliError(
          `the den daemon (pid ${pid}) did not exit within ${DAEMON_WAIT_MS / 1000} s of SIGTERM; ` +
            `see ${files.log}, or end it with \`kill -9 ${pid}\``,
        );
      }
      await sleep(POLL_MS);
    }
  } finally {
    spinner.stop();
  }
  rmSync(files.pid, { force: true });
  ctx.stderr.write(`den daemon stopped (pid ${pid})\n`);
  return 0;
}

/** `den status`. */
export async function status(ctx: Context, args: JsonArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  const s = await client.status();
  if (args.json) {
    ctx.stdout.write(json({ url: ctx.config.url, ...s }));
    return 0;
  }
  const counts = Object.entries(s.sandboxes).filter(([, n]) => n > 0);
  const lines = [
    `daemon      ${ctx.config.url}  (version ${s.version}, up ${formatDuration(s.uptimeMs)})`,
    `database    ${s.database}`,
    ...s.runtimes.map(
      (r, i) =>
        `${i === 0 ? 'runtimes   ' : '           '} ${r.name.padEnd(6)} ${r.available ? (r.version ?? 'available') : 'not available'}`,
    ),
    `sandboxes   ${counts.length ? counts.map(([state, n]) => `${n} ${state}`).join(', ') : 'none'}`,
  ];
  ctx.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** `den images`. */
export async function images(ctx: Context, args: JsonArgs): Promise<number> {
  const list = await new DenClient({ url: ctx.config.url }).images();
  ctx.stdout.write(
    listing(args.json, list, ['NAME', 'LAYERS', 'USER', 'WORKDIR', 'CREATED'], (i) => [
      i.name,
      String(i.layers.length),
      i.user,
      i.workdir,
      formatAge(i.createdAt),
    ]),
  );
  return 0;
}

/** True when a den daemon answers /v1/health at the client's URL (refused, timed out or foreign: false). */
async function isHealthy(client: DenClient): Promise<boolean> {
  try {
    return (await client.health()).ok === true;
  } catch {
    return false;
  }
}

function makeHome(home: string): void {
  try {
    mkdirSync(home, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new CliError(`cannot create ${home}: permission denied; run as root or give another --home`);
    }
    throw err;
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * True when `pid` runs and looks like den's daemon, so a stale pidfile whose number the kernel gave to another
 * process never gets that process signalled. /proc/PID/cmdline holds the argv, NUL-separated (proc(5)).
 */
function isDenDaemon(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    // The entry as `den up` starts it, or a title the daemon gave itself (process.title rewrites argv).
    return argv.some((a) => a.endsWith('daemon/dist/src/main.js')) || /^den\b/.test(argv[0] ?? '');
  } catch {
    // No /proc (not Linux): trust the pidfile.
    return true;
  }
}

/**
 * The line of the daemon log that best says why it stopped: its own fatal line (`den daemon: ...`, printed by
 * main.ts), else the last error-level JSON log record, else the last line.
 */
export function lastLogLine(file: string): string | undefined {
  let lines: string[];
  try {
    lines = readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0);
  } catch {
    return undefined;
  }
  const recent = lines.slice(-200);
  const fatal = [...recent].reverse().find((l) => l.startsWith('den daemon:'));
  const errorRecord = [...recent].reverse().find((l) => {
    try {
      return (JSON.parse(l) as { level?: number }).level! >= 50;
    } catch {
      return false;
    }
  });
  let line = fatal ?? recent[recent.length - 1];
  if (!fatal && errorRecord) {
    const record = JSON.parse(errorRecord) as { msg?: string; err?: { message?: string } };
    line = [record.msg, record.err?.message].filter(Boolean).join(': ');
  }
  return line && line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
