import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const DAEMON_MAIN = join(REPO_ROOT, 'packages/daemon/dist/src/main.js');
export const DEN_BIN = join(REPO_ROOT, 'bin/den');

/** A real den daemon in its own data directory, listening on a free loopback port. */
export interface TestDaemon {
  url: string;
  home: string;
  proc: ChildProcess;
  /** log lines (JSON from pino) seen so far */
  logs: string[];
  /** SIGTERM and wait for exit (sandboxes keep running) */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would */
  kill9(): Promise<void>;
  /** den's bridge of this daemon (also its nft tables and namespace prefix) */
  bridge: string;
  /** start a new daemon process on the same home (and the same port when possible) */
  /** stops (SIGTERM) and starts the daemon again on the same home and address; `env` adds to its environment */
  restart(env?: NodeJS.ProcessEnv): Promise<TestDaemon>;
}

/** Daemons started by this process; killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

let networksMade = 0;

/**
 * A bridge and subnet of its own for each test daemon, so daemons of one test (and leftovers of another) never
 * share rules: `dt<pid><n>` on 10.<100 + pid % 100>.<n>.0/24.
 */
export function testNetworkEnv(): NodeJS.ProcessEnv {
  const n = networksMade++ % 250;
  return {
    DEN_NETWORK_BRIDGE: `dt${process.pid % 10000}${n.toString(36)}`,
    DEN_NETWORK_SUBNET: `10.${100 + (process.pid % 100)}.${n}.0/24`,
  };
}

export async function startDaemon(
  opts: { home?: string; listen?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<TestDaemon> {
  if (!opts.env?.DEN_NETWORK_BRIDGE) opts = { ...opts, env: { ...testNetworkEnv(), ...opts.env } };
  const home = opts.home ?? (await mkdtemp(join(tmpdir(), 'den-e2e-')));
  const proc = spawn(process.execPath, [DAEMON_MAIN, '--home', home, '--listen', opts.listen ?? '127.0.0.1:0'], {
    env: { ...process.env, DEN_LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  running.add(proc);
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      running.delete(proc);
      resolve();
    }),
  );
  const listening = new Promise<string>((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(new Error(`daemon exited with ${code} before listening:\n${logs.slice(-20).join('\n')}`));
    proc.once('exit', onExit);
    const timer = setTimeout(() => reject(new Error(`daemon did not listen within 60 s:\n${logs.join('\n')}`)), 60_000);
    for (const stream of [proc.stdout!, proc.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        if (process.env.DEN_E2E_VERBOSE) console.error(`[daemon] ${line}`);
        const m = /"address":"(http:\/\/[^"]+)"/.exec(line);
        if (m && /daemon listening/.test(line)) {
          clearTimeout(timer);
          proc.off('exit', onExit);
          resolve(m[1]!);
        }
      });
    }
  });
  let url: string;
  try {
    url = await listening;
  } catch (err) {
    // A daemon that refused to start (what some tests expect) leaves no data directory this call made behind.
    proc.kill('SIGKILL');
    await exited;
    if (!opts.home) await rm(home, { recursive: true, force: true });
    throw err;
  }
  const daemon: TestDaemon = {
    url,
    home,
    bridge: opts.env!.DEN_NETWORK_BRIDGE!,
    proc,
    logs,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
    async kill9() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    async restart(env: NodeJS.ProcessEnv = {}) {
      await daemon.stop();
      return startDaemon({ ...opts, env: { ...opts.env, ...env }, home, listen: new URL(url).host });
    },
  };
  return daemon;
}

/** Deletes every sandbox through the API, stops the daemon and removes its home. */
export async function destroyDaemon(d: TestDaemon): Promise<void> {
  try {
    if (d.proc.exitCode === null && d.proc.signalCode === null) {
      const res = await fetch(`${d.url}/v1/sandboxes`);
      const { sandboxes } = (await res.json()) as { sandboxes: { id: string }[] };
      await Promise.all(sandboxes.map((s) => fetch(`${d.url}/v1/sandboxes/${s.id}`, { method: 'DELETE' })));
    }
  } finally {
    await d.stop();
    await rm(d.home, { recursive: true, force: true });
  }
}

/** Polls `check` until it is true; fails with `what` after the timeout. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** POSTs/GETs JSON to the daemon and returns status + parsed body, for tests of raw API errors. */
export async function api(
  daemon: { url: string },
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${daemon.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** A loopback TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}
