import { posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DenError, FrameType } from '@den/shared';
import type { AgentConnection } from '../ports.js';
import { detectApp } from './detect.js';
import type { AppPlan, Step } from './types.js';

/** Where a project lives in the sandbox unless the caller says otherwise. */
export const DEFAULT_APP_DIR = '/home/user/app';
/** Install output and the dev server's output, one file the logs endpoint tails (it survives daemon restarts). */
export const APP_LOG = '/home/user/.den/app.log';
/** What den knows about the app of a sandbox: its directory and plan (read back on restart). */
const APP_STATE = '/home/user/.den/app.json';
/** The dev server's process tag in the agent's process list. */
export const APP_TAG = 'den-app';

export interface AppStartRequest {
  /** project directory inside the sandbox (already uploaded, or the clone target of `git`) */
  dir?: string;
  /** a git URL cloned into `dir` first (the sandbox needs network access to it) */
  git?: string;
  /** restart the dev server of the app den started before, without installing again */
  restart?: boolean;
  /** how long the server may take to listen on its port; default 120 s */
  readyTimeoutMs?: number;
}

export interface AppStatus {
  dir: string;
  kind: AppPlan['kind'];
  port: number;
  /** pid of the dev server in the sandbox, or null when it is not running */
  pid: number | null;
}

interface AppDeps {
  agentFor(ref: string): Promise<AgentConnection>;
  previewDomain: string;
  /** where sandboxes see the shared package cache */
  cacheDir: string;
}

/** Per-step limit: npm and pip installs from the local cache take seconds; a hung step must not hang the request. */
const STEP_TIMEOUT_MS = 10 * 60_000;

/**
 * Live previews: detect a project's runtime, install its packages from den's shared cache, start its dev server
 * as a background process bound to 0.0.0.0, and wait until its port listens. Every step runs through the sandbox's
 * agent as the sandbox's user; output goes to APP_LOG so `den logs` shows install and server alike.
 */
export class AppPreviewService {
  constructor(private readonly deps: AppDeps) {}

  async start(ref: string, req: AppStartRequest): Promise<AppStatus> {
    const agent = await this.deps.agentFor(ref);
    let dir = checkDir(req.dir ?? DEFAULT_APP_DIR);
    let plan: AppPlan;
    if (req.restart) {
      const saved = await this.savedState(agent);
      if (!saved) {
        throw new DenError(
          'INVALID_ARGUMENT',
          `no app was started in sandbox ${ref} yet: run \`den preview ${ref} DIR\``,
        );
      }
      ({ dir, plan } = saved);
    } else {
      await this.prepareLog(agent);
      if (req.git) await this.clone(agent, req.git, dir);
      plan = await detectApp(projectFiles(agent, dir), {
        previewDomain: this.deps.previewDomain,
        cacheDir: this.deps.cacheDir,
      });
      await agent.writeFile(APP_STATE, JSON.stringify({ dir, plan }, null, 2));
    }
    await this.stopServer(agent);
    if (!req.restart) {
      for (const step of plan.install) await this.runStep(agent, dir, step);
    }
    const pid = await this.startServer(agent, dir, plan.start);
    await this.waitForPort(agent, pid, plan.port, req.readyTimeoutMs ?? 120_000);
    return { dir, kind: plan.kind, port: plan.port, pid };
  }

  async status(ref: string): Promise<AppStatus> {
    const agent = await this.deps.agentFor(ref);
    const saved = await this.savedState(agent);
    if (!saved)
      throw new DenError('APP_NOT_FOUND', `no app was started in sandbox ${ref}: run \`den preview ${ref} DIR\``);
    const server = (await agent.listProcesses()).find((p) => p.tag === APP_TAG && !p.exit);
    return { dir: saved.dir, kind: saved.plan.kind, port: saved.plan.port, pid: server?.pid ?? null };
  }

  /** Stops the dev server den started, if one runs. */
  async stop(ref: string): Promise<void> {
    await this.stopServer(await this.deps.agentFor(ref));
  }

  private async savedState(agent: AgentConnection): Promise<{ dir: string; plan: AppPlan } | undefined> {
    try {
      const { stream } = await agent.readFile(APP_STATE);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as { dir: string; plan: AppPlan };
    } catch (err) {
      if (err instanceof DenError && err.code === 'FILE_NOT_FOUND') return undefined;
      throw err;
    }
  }

  private async prepareLog(agent: AgentConnection): Promise<void> {
    await agent.makeDir(posix.dirname(APP_LOG));
    await agent.writeFile(APP_LOG, '');
  }

  private async clone(agent: AgentConnection, url: string, dir: string): Promise<void> {
    if (!/^(https?|git|ssh):\/\/\S+$|^[\w.-]+@[\w.-]+:\S+$/.test(url)) {
      throw new DenError('INVALID_ARGUMENT', `git URL "${url}" must be http(s)://, git://, ssh:// or user@host:path`);
    }
    await this.runStep(agent, '/home/user', { argv: ['git', 'clone', url, dir], env: {} });
  }

  /** Runs one step with its output appended to the log; a failure names the step and shows the log's end. */
  private async runStep(agent: AgentConnection, cwd: string, step: Step): Promise<void> {
    const result = await agent.run({
      cmd: logged(step.argv),
      cwd,
      env: step.env,
      timeoutMs: STEP_TIMEOUT_MS,
    });
    if (result.exit.exitCode !== 0) {
      const tail = await this.logTail(agent);
      const how = result.exit.timedOut
        ? `timed out after ${STEP_TIMEOUT_MS / 1000} s`
        : `exited with ${result.exit.exitCode ?? result.exit.signal}`;
      throw new DenError('APP_FAILED', `\`${step.argv.join(' ')}\` ${how}; the end of the log (den logs):\n${tail}`, {
        step: step.argv,
      });
    }
  }

  private async startServer(agent: AgentConnection, cwd: string, step: Step): Promise<number> {
    const handle = await agent.openProcess({
      cmd: logged(step.argv),
      cwd,
      env: step.env,
      background: true,
      tag: APP_TAG,
    });
    for await (const frame of handle.frames()) {
      if (frame.type === FrameType.STARTED) {
        const { pid } = JSON.parse(Buffer.from(frame.payload).toString('utf8')) as { pid: number };
        // A background process keeps running (and keeps its output in the log file) without this stream.
        handle.close();
        return pid;
      }
      if (frame.type === FrameType.ERROR) {
        throw new DenError(
          'APP_FAILED',
          `cannot start \`${step.argv.join(' ')}\`: ${Buffer.from(frame.payload).toString('utf8')}`,
        );
      }
    }
    throw new DenError('APP_FAILED', `the agent did not start \`${step.argv.join(' ')}\``);
  }

  private async stopServer(agent: AgentConnection): Promise<void> {
    const running = (await agent.listProcesses()).filter((p) => p.tag === APP_TAG && !p.exit);
    for (const p of running) await agent.signal(p.pid, 'SIGTERM').catch(() => undefined);
    const deadline = Date.now() + 5_000;
    while (running.length && Date.now() < deadline) {
      const still = (await agent.listProcesses()).filter((p) => p.tag === APP_TAG && !p.exit);
      if (!still.length) return;
      await sleep(100);
    }
    for (const p of running) await agent.signal(p.pid, 'SIGKILL').catch(() => undefined);
  }

  /** Until the server listens on `port` on an address previews reach; fails early when it exits. */
  private async waitForPort(agent: AgentConnection, pid: number, port: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const sockets = (await agent.listPorts()).filter((s) => s.port === port);
      if (sockets.some((s) => !s.address.startsWith('127.') && s.address !== '::1')) return;
      const server = (await agent.listProcesses()).find((p) => p.pid === pid);
      if (!server || server.exit) {
        throw new DenError(
          'APP_FAILED',
          `the dev server exited before listening on port ${port}; the end of the log:\n${await this.logTail(agent)}`,
        );
      }
      if (Date.now() > deadline) {
        const where = sockets.length ? ' (it listens on loopback only: bind it to 0.0.0.0)' : '';
        throw new DenError(
          'APP_FAILED',
          `the dev server did not listen on port ${port} within ${timeoutMs / 1000} s${where}; the end of the log:\n${await this.logTail(agent)}`,
        );
      }
      await sleep(200);
    }
  }

  private async logTail(agent: AgentConnection): Promise<string> {
    const r = await agent.run({ cmd: ['tail', '-n', '30', APP_LOG] }).catch(() => undefined);
    return r?.stdout ?? '';
  }
}

/** argv run with its output appended to the app log, after a header line naming it. */
function logged(argv: string[]): string[] {
  return ['sh', '-c', `printf '[den] $ %s\\n' "$*" >> ${APP_LOG}; exec "$@" >> ${APP_LOG} 2>&1`, 'den-step', ...argv];
}

function checkDir(dir: string): string {
  if (!dir.startsWith('/') || dir.split('/').includes('..')) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `app directory "${dir}" must be an absolute path inside the sandbox without ..`,
    );
  }
  return posix.normalize(dir);
}

/** The project as detectApp reads it: through the agent, relative to `dir`. */
function projectFiles(agent: AgentConnection, dir: string) {
  return {
    async list(): Promise<string[]> {
      try {
        const entries = await agent.list(dir, 2);
        return entries.map((e) => posix.relative(dir, e.path));
      } catch (err) {
        if (err instanceof DenError && err.code === 'FILE_NOT_FOUND') {
          throw new DenError(
            'INVALID_ARGUMENT',
            `the app directory ${dir} does not exist in the sandbox: upload the project first`,
          );
        }
        throw err;
      }
    },
    async read(path: string): Promise<string | undefined> {
      try {
        const { stream } = await agent.readFile(posix.join(dir, path));
        const chunks: Buffer[] = [];
        for await (const c of stream) chunks.push(c as Buffer);
        return Buffer.concat(chunks).toString('utf8');
      } catch (err) {
        if (err instanceof DenError && (err.code === 'FILE_NOT_FOUND' || err.code === 'INVALID_ARGUMENT'))
          return undefined;
        throw err;
      }
    },
  };
}
