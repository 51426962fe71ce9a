import { DEN_VERSION } from '@den/shared/version';
import { DEFAULT_AGENT_SOCKET } from './protocol.js';

/** Everything the agent reads from its environment, resolved once at startup. */
export interface AgentConfig {
  socketPath: string;
  /** user for processes and files when a request names none; root when this user does not exist */
  defaultUser: string;
  /** environment every process gets, over the per-user defaults and under the request's own env */
  sandboxEnv: Record<string, string>;
  version: string;
  /** den-spawn's binary (spawner.ts); unset or missing: the agent forks itself */
  spawner: string | undefined;
  /** root-only directory on a sandbox-internal filesystem for den-spawn's socket */
  spawnDir: string;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return {
    socketPath: env.DEN_AGENT_SOCKET || DEFAULT_AGENT_SOCKET,
    defaultUser: env.DEN_DEFAULT_USER || 'user',
    sandboxEnv: parseSandboxEnv(env.DEN_SANDBOX_ENV),
    version: DEN_VERSION,
    spawner: env.DEN_SPAWNER || undefined,
    // /run is a tmpfs inside the sandbox: a socket there stays inside gVisor (one on a host-backed mount would be
    // a host socket, which a checkpoint cannot save).
    spawnDir: env.DEN_SPAWN_DIR || `/run/den-spawn-${process.pid}`,
  };
}

/** DEN_SANDBOX_ENV is written by the daemon; a malformed value is a daemon bug, so the agent refuses to start. */
export function parseSandboxEnv(raw: string | undefined): Record<string, string> {
  if (!raw) return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new Error(`DEN_SANDBOX_ENV is not valid JSON (${(err as Error).message}); expected an object of strings`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error('DEN_SANDBOX_ENV must be a JSON object of strings, such as {"FOO":"bar"}');
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new Error(`DEN_SANDBOX_ENV.${key} must be a string, not ${typeof v}`);
    out[key] = v;
  }
  return out;
}
