import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { AgentClient } from '../src/client.js';

const MAIN = new URL('../src/main.js', import.meta.url).pathname;
/** built by `npm run build` (scripts/bundle-agent.mjs) */
export const SPAWNER = new URL('../den-spawn', import.meta.url).pathname;
let counter = 0;

/**
 * Agents still running. If the test process ends before its after() hooks run (the runner's timeout sends a
 * signal), they are killed so no agent outlives the test.
 */
const live = new Map<ChildProcess, string>();
const killLive = (): void => {
  for (const [child, dir] of live) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
};
process.once('exit', killLive);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killLive();
    process.kill(process.pid, signal);
  });
}

/**
 * A real agent on the host, as a child process with its socket in a fresh temp dir. Every process it starts
 * carries DEN_TEST_MARK=<mark> (through DEN_SANDBOX_ENV), which is how `leftovers()` finds processes a test left
 * behind, descendants included. `stop()` ends the agent, kills anything still marked and removes the dir.
 */
export interface AgentFixture {
  dir: string;
  socketPath: string;
  mark: string;
  child: ChildProcess;
  client: AgentClient;
  logs(): string;
  /** pids of live processes started through this agent (or their descendants) */
  leftovers(extraEnvEntry?: string): Promise<number[]>;
  stop(): Promise<void>;
}

export async function startAgent(
  options: { sandboxEnv?: Record<string, string>; env?: Record<string, string>; socketPath?: string } = {},
): Promise<AgentFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'den-agent-test-'));
  const mark = `${process.pid}-${++counter}-${Date.now()}`;
  const socketPath = options.socketPath ?? join(dir, 'agent.sock');
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      DEN_AGENT_SOCKET: socketPath,
      DEN_DEFAULT_USER: 'nobody',
      DEN_SANDBOX_ENV: JSON.stringify({ DEN_TEST_MARK: mark, ...options.sandboxEnv }),
      // Processes start through den-spawn as in a sandbox (options.env can unset it to test the fallback).
      DEN_SPAWNER: SPAWNER,
      DEN_SPAWN_DIR: join(dir, 'spawn'),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.set(child, dir);
  child.once('exit', () => live.delete(child));
  let log = '';
  child.stdout?.on('data', (d) => {
    log += d;
  });
  child.stderr?.on('data', (d) => {
    log += d;
  });
  const client = new AgentClient(socketPath);
  const fixture: AgentFixture = {
    dir,
    socketPath,
    mark,
    child,
    client,
    logs: () => log,
    leftovers: (extra) => pidsWithEnv([`DEN_TEST_MARK=${mark}`, ...(extra ? [extra] : [])]),
    async stop() {
      await client.close();
      await stopProcess(child);
      for (const pid of await fixture.leftovers()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await client.waitReady(10_000);
  } catch (err) {
    await fixture.stop();
    throw new Error(`the agent did not start: ${(err as Error).message}\n${log}`);
  }
  return fixture;
}

/** SIGTERM, then SIGKILL after 5 s; resolves with the exit code (null when killed). */
export async function stopProcess(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/** Live (non-zombie) processes whose environment holds every one of `entries` exactly. */
export async function pidsWithEnv(entries: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = (await readFile(`/proc/${name}/environ`, 'utf8')).split('\0');
      if (entries.every((e) => env.includes(e))) pids.push(Number(name));
    } catch {
      // exited while scanning, or a kernel thread
    }
  }
  return pids;
}

/** Polls until `check` returns true or `timeoutMs` passes; returns the last result. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An env var to tag the processes of one test case: pass `env` in the spec, look for `entry` in leftovers(). */
export function uniqueCase(): { env: Record<string, string>; entry: string } {
  const value = `${process.pid}-${++counter}-${Math.random().toString(36).slice(2)}`;
  return { env: { DEN_TEST_CASE: value }, entry: `DEN_TEST_CASE=${value}` };
}

/**
 * One agent for the enclosing suite: started before its tests, stopped after them, and the suite fails if any
 * process the tests started is still running then.
 */
export function agentForSuite(what: string, options?: Parameters<typeof startAgent>[0]): () => AgentFixture {
  let agent: AgentFixture | undefined;
  before(async () => {
    agent = await startAgent(options);
  });
  after(async () => {
    if (!agent) return;
    const left = await agent.leftovers();
    await agent.stop();
    assert.deepEqual(left, [], `processes were left running by the ${what} tests`);
  });
  return () => {
    if (!agent) throw new Error('the suite agent is not started yet');
    return agent;
  };
}
