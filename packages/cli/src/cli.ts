import { CommanderError } from 'commander';
import { cp } from './commands/cp.js';
import { down, images, status, up } from './commands/daemon.js';
import { exec, run } from './commands/exec.js';
import { keyCreate, keyList, keyRemove } from './commands/keys.js';
import { network, ports } from './commands/network.js';
import { logs, preview } from './commands/preview.js';
import { create, info, lifecycle, list, remove } from './commands/sandbox.js';
import { imageCreate, imageRemove, snapshotCreate, snapshotList, snapshotRemove } from './commands/snapshots.js';
import { idleTimeout, timeout } from './commands/timeout.js';
import { resolveCliConfig } from './config.js';
import { describeError, EXIT_USAGE } from './errors.js';
import { buildProgram, type Handlers, type Output } from './program.js';

/** The real handlers: each talks to the daemon through @den/sdk. */
export const defaultHandlers: Handlers = {
  up,
  down,
  status,
  images,
  create,
  list,
  info,
  lifecycle,
  remove,
  exec,
  run,
  cp,
  ports,
  network,
  preview,
  logs,
  keyCreate,
  keyList,
  keyRemove,
  timeout,
  idleTimeout,
  snapshotCreate,
  snapshotList,
  snapshotRemove,
  imageCreate,
  imageRemove,
};

export interface RunCliOptions {
  handlers?: Handlers;
  env?: Record<string, string | undefined>;
  stdout?: Output;
  stderr?: Output;
}

/**
 * Parses `argv` (without `node` and the script), runs the command and returns the exit status. Every failure is
 * printed here as exactly one line, `den: <message>`, on stderr: 2 for usage errors, 1 otherwise (commands such
 * as `den exec` return their own status).
 */
export async function runCli(argv: string[], options: RunCliOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const stderr = options.stderr ?? process.stderr;
  const outcome = { exitCode: 0 };
  const program = buildProgram({
    handlers: options.handlers ?? defaultHandlers,
    env,
    outcome,
    ...(options.stdout ? { stdout: options.stdout } : {}),
    stderr,
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return outcome.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      // Help printed because a command was missing (`den`, `den instance`): the help is the message.
      if (err.code === 'commander.help') return EXIT_USAGE;
      stderr.write(`den: ${usageMessage(err, argv)}\n`);
      return EXIT_USAGE;
    }
    const { message, exitCode } = describeError(err, bestEffortUrl(argv, env));
    stderr.write(`den: ${message}\n`);
    return exitCode;
  }
}

/** Commander's message on one line without its `error: ` prefix, with a hint where the mistake is common. */
export function usageMessage(err: CommanderError, argv: string[]): string {
  let message = err.message
    .replace(/^error: /, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  if (err.code === 'commander.unknownOption' && (argv.includes('exec') || argv.includes('run'))) {
    message += '; put the command to run after `--`, e.g. den exec REF -- ls -l';
  }
  return message;
}

/** The URL for an error message when parsing already succeeded (flags are read again, loosely). */
function bestEffortUrl(argv: string[], env: Record<string, string | undefined>): string {
  const flag = (name: string) => {
    const i = argv.indexOf(name);
    const eq = argv.find((a) => a.startsWith(`${name}=`));
    return i >= 0 ? argv[i + 1] : eq?.slice(name.length + 1);
  };
  try {
    const url = flag('--url');
    const listen = flag('--listen');
    return resolveCliConfig({ ...(url ? { url } : {}), ...(listen ? { listen } : {}) }, env).url;
  } catch {
    return 'the configured URL';
  }
}
