import { rmSync } from 'node:fs';
import { configFromEnv } from './config.js';
import { createAgent } from './server.js';
import { Spawner } from './spawner.js';

/**
 * The sandbox agent's entry point. It runs as root in the sandbox under tini (which reaps orphans and forwards
 * signals) and serves the daemon over HTTP/2 on a Unix socket. It does not rely on being PID 1.
 */
const SHUTDOWN_GRACE_MS = 2000;

process.title = 'den-agent';
// Log writes that fail (the log pipe is gone) are dropped; otherwise each failure would be logged again, forever.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);
const config = configFromEnv();

// Children run as other users, and node-pty sets their uid and gid but not their supplementary groups: dropping
// the agent's own (root's) keeps them from inheriting root's groups. Needs CAP_SETGID; without it there is
// nothing to drop either.
if (process.getuid?.() === 0) {
  try {
    process.setgroups?.([]);
  } catch {
    // not permitted: keep going
  }
}

// den-spawn is started before the agent listens: forking the agent inside gVisor blocks its event loop for tens of
// ms, but the helper then starts beside the rest of the agent's start and the daemon's readiness check, instead of
// in front of the first process. Measured on runsc: create +~15 ms, the first exec after it ~135 -> ~75 ms. A
// request that comes before den-spawn listens waits for it.
const spawner = Spawner.start(config.spawner, config.spawnDir);

const agent = createAgent({
  version: config.version,
  spawner,
  defaultUser: config.defaultUser,
  sandboxEnv: config.sandboxEnv,
  onPrepareCheckpoint: () => void prepareCheckpoint(),
});
await agent.listen(config.socketPath);
// While the daemon checks readiness and answers the create, a throw-away `true` warms the launch path. Measured A/B
// (8 creates each way, twice, on this 2-core VM): the first exec after a create went from 22-30 to 14-17 ms on runc
// and from 200-275 to 160-180 ms on runsc, with the create itself no slower.
void agent.warmUp();

/**
 * Pause with memory (runsc checkpoint): gVisor cannot save a socket bound to a host file, so the agent closes its
 * listener (and every session) when the daemon asks, and the daemon checkpoints the sandbox. After a restore (or if
 * the checkpoint failed and the sandbox keeps running) the daemon sends SIGUSR2, which tini forwards to the agent:
 * it listens again on the same path.
 */
let paused = false;
/** Without a listener nothing would keep Node's event loop alive: the agent would exit and take the sandbox along. */
let keepAlive: NodeJS.Timeout | undefined;
async function prepareCheckpoint(): Promise<void> {
  paused = true;
  keepAlive = setInterval(() => undefined, 3_600_000);
  // Resolves once every connection's descriptor is closed: gVisor must not find one still connected to the host (the
  // daemon starts the checkpoint as soon as the socket file is gone).
  await agent.unlisten();
  rmSync(config.socketPath, { force: true });
  console.error('den-agent: listener closed for a checkpoint; waiting for SIGUSR2');
}
process.on('SIGUSR2', () => {
  if (!paused) return;
  paused = false;
  agent.listen(config.socketPath).then(
    () => {
      clearInterval(keepAlive);
      console.error('den-agent: listening again after SIGUSR2');
    },
    (err: unknown) => console.error('den-agent: cannot listen again:', err),
  );
});
console.error(
  `den-agent ${config.version} listening on ${config.socketPath} (pid ${process.pid}, ready after ${Math.round(process.uptime() * 1000)} ms)`,
);

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.error(`den-agent: ${signal}: stopping processes`);
  await agent.shutdown(SHUTDOWN_GRACE_MS);
  rmSync(config.socketPath, { force: true });
  if (spawner) rmSync(config.spawnDir, { recursive: true, force: true });
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));

// One broken request must not take the sandbox down with it: the agent is the only way into the sandbox.
process.on('uncaughtException', (err) => console.error('den-agent: uncaught exception:', err));
process.on('unhandledRejection', (err) => console.error('den-agent: unhandled rejection:', err));
