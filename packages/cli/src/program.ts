import {
  type CreateSandboxRequest,
  DEN_VERSION,
  type NetworkPolicyName,
  type OnTimeoutAction,
  type SandboxState,
  SandboxState as SandboxStateSchema,
} from '@den/shared';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type CliConfig, type GlobalOptions, resolveCliConfig } from './config.js';
import { type CpPlan, parseCpArgs } from './cp-path.js';
import { UsageError } from './errors.js';

/** Where a command writes; process.stdout/stderr in real use. */
export interface Output {
  write(text: string | Uint8Array): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** What every command handler gets: resolved configuration and its output streams. */
export interface Context {
  config: CliConfig;
  env: Record<string, string | undefined>;
  stdout: Output;
  stderr: Output;
}

export interface JsonArgs {
  json: boolean;
}
/** `den create`: the API's create request; -e and --metadata always give (possibly empty) maps. */
export interface CreateArgs extends JsonArgs, CreateSandboxRequest {
  env: Record<string, string>;
  metadata: Record<string, string>;
}
export interface ListArgs extends JsonArgs {
  state?: SandboxState;
}
export interface InfoArgs extends JsonArgs {
  ref: string;
}
export interface LifecycleArgs {
  action: 'start' | 'stop' | 'restart' | 'pause' | 'resume';
  refs: string[];
}
export interface RemoveArgs {
  refs: string[];
  force: boolean;
}
export interface ExecArgs {
  ref: string;
  cmd: string[];
  user?: string;
  cwd?: string;
  env: Record<string, string>;
  timeoutMs?: number;
  interactive: boolean;
  tty: boolean;
}
export interface PortsArgs extends JsonArgs {
  ref: string;
}
export interface NetworkArgs {
  ref: string;
  policy: NetworkPolicyName;
  allow: string[];
}
export interface PreviewArgs extends JsonArgs {
  ref: string;
  /** local project directory to upload */
  localDir?: string;
  /** project directory in the sandbox */
  dir: string;
  git?: string;
  restart: boolean;
}
export interface LogsArgs {
  ref: string;
  follow: boolean;
  lines?: number;
}
export interface IdleTimeoutArgs {
  ref: string;
  /** 0 = never */
  idleTimeoutMs: number;
}

export interface SnapshotCreateArgs extends JsonArgs {
  ref: string;
  name?: string;
}

export interface SnapshotRemoveArgs {
  refs: string[];
}

export interface ImageCreateArgs extends JsonArgs {
  name: string;
  fromSandbox: string;
}

export interface ImageRemoveArgs {
  names: string[];
}

export interface KeyCreateArgs extends JsonArgs {
  name: string;
}
export interface KeyRemoveArgs {
  names: string[];
}
export interface TimeoutArgs {
  ref: string;
  /** from now; 0 = no timeout */
  timeoutMs: number;
}
export interface RunArgs {
  ref: string;
  /** empty: the user's login shell */
  cmd: string[];
  user?: string;
  cwd?: string;
  env: Record<string, string>;
}

/** The work behind each command; each returns the exit status. Tests substitute recorders to check parsing. */
export interface Handlers {
  up(ctx: Context): Promise<number>;
  down(ctx: Context): Promise<number>;
  status(ctx: Context, args: JsonArgs): Promise<number>;
  images(ctx: Context, args: JsonArgs): Promise<number>;
  create(ctx: Context, args: CreateArgs): Promise<number>;
  list(ctx: Context, args: ListArgs): Promise<number>;
  info(ctx: Context, args: InfoArgs): Promise<number>;
  lifecycle(ctx: Context, args: LifecycleArgs): Promise<number>;
  remove(ctx: Context, args: RemoveArgs): Promise<number>;
  exec(ctx: Context, args: ExecArgs): Promise<number>;
  run(ctx: Context, args: RunArgs): Promise<number>;
  cp(ctx: Context, args: CpPlan): Promise<number>;
  ports(ctx: Context, args: PortsArgs): Promise<number>;
  network(ctx: Context, args: NetworkArgs): Promise<number>;
  preview(ctx: Context, args: PreviewArgs): Promise<number>;
  logs(ctx: Context, args: LogsArgs): Promise<number>;
  keyCreate(ctx: Context, args: KeyCreateArgs): Promise<number>;
  keyList(ctx: Context, args: JsonArgs): Promise<number>;
  keyRemove(ctx: Context, args: KeyRemoveArgs): Promise<number>;
  timeout(ctx: Context, args: TimeoutArgs): Promise<number>;
  idleTimeout(ctx: Context, args: IdleTimeoutArgs): Promise<number>;
  snapshotCreate(ctx: Context, args: SnapshotCreateArgs): Promise<number>;
  snapshotList(ctx: Context, args: JsonArgs): Promise<number>;
  snapshotRemove(ctx: Context, args: SnapshotRemoveArgs): Promise<number>;
  imageCreate(ctx: Context, args: ImageCreateArgs): Promise<number>;
  imageRemove(ctx: Context, args: ImageRemoveArgs): Promise<number>;
}

/** Filled in by the action that ran. */
export interface Outcome {
  exitCode: number;
}

export interface ProgramOptions {
  handlers: Handlers;
  env?: Record<string, string | undefined>;
  stdout?: Output;
  stderr?: Output;
  outcome?: Outcome;
}

export const SANDBOX_STATES: readonly string[] = (SandboxStateSchema.anyOf as { const: string }[]).map((s) => s.const);

/**
 * Builds the `den` command line. Parsing is separate from running (handlers are passed in), so tests parse argv
 * without a daemon. Errors from parsing throw a CommanderError (exitOverride); `runCli` prints them.
 *
 * Every subcommand also accepts the global options (`den ls --url X` as well as `den --url X ls`). Positional
 * options keep `den exec REF -- CMD --flag` intact: whatever follows `--` reaches the command untouched.
 */
export function buildProgram(options: ProgramOptions): Command {
  const { handlers } = options;
  const env = options.env ?? process.env;
  const outcome = options.outcome ?? { exitCode: 0 };
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;

  const program = new Command('den')
    .description('den: isolated Linux sandboxes (gVisor runsc and runc) on your own machines')
    .version(DEN_VERSION, '-V, --version')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => stdout.write(text),
      writeErr: (text) => stderr.write(text),
      // runCli prints parse errors itself, as one `den: ...` line.
      outputError: () => {},
    })
    .showSuggestionAfterError(true);
  addGlobalOptions(program, false);

  /** Runs a handler with the context of `cmd` and records its exit status. */
  const act = async (cmd: Command, fn: (ctx: Context) => Promise<number>): Promise<void> => {
    const ctx: Context = { config: resolveCliConfig(globalFlags(cmd), env), env, stdout, stderr };
    outcome.exitCode = await fn(ctx);
  };
  const sub = (parent: Command, nameAndArgs: string, description: string): Command =>
    addGlobalOptions(parent.command(nameAndArgs).description(description));

  // ---- daemon ----
  sub(program, 'up', 'start the den daemon in the background and wait until it answers').action((_o, cmd: Command) =>
    act(cmd, (ctx) => handlers.up(ctx)),
  );
  sub(program, 'down', 'stop the den daemon started by `den up`').action((_o, cmd: Command) =>
    act(cmd, (ctx) => handlers.down(ctx)),
  );
  sub(program, 'status', 'daemon health, runtime versions and sandbox counts by state')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }, cmd: Command) => act(cmd, (ctx) => handlers.status(ctx, { json: !!o.json })));
  sub(program, 'images', 'list images sandboxes can be created from')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }, cmd: Command) => act(cmd, (ctx) => handlers.images(ctx, { json: !!o.json })));

  // ---- sandboxes ----
  const defineCreate = (parent: Command, nameAndArgs: string, withNameArgument: boolean) =>
    addCreateOptions(sub(parent, nameAndArgs, 'create a sandbox and print its id')).action((...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const o = cmd.opts<CreateFlags>();
      const positionalName = withNameArgument ? (args[0] as string | undefined) : undefined;
      if (positionalName && o.name && positionalName !== o.name) {
        throw new UsageError(`two names given ("${positionalName}" and --name ${o.name}): give one`);
      }
      return act(cmd, (ctx) => handlers.create(ctx, createArgs(o, positionalName)));
    });
  const defineList = (parent: Command, name: string) =>
    sub(parent, name, 'list sandboxes')
      .option('--json', 'print JSON')
      .addOption(new Option('--state <state>', 'only sandboxes in this state').choices(SANDBOX_STATES))
      .action((o: { json?: boolean; state?: SandboxState }, cmd: Command) =>
        act(cmd, (ctx) => handlers.list(ctx, { json: !!o.json, ...(o.state ? { state: o.state } : {}) })),
      );
  const defineLifecycle = (parent: Command, action: LifecycleArgs['action']) =>
    sub(parent, `${action} <ref...>`, `${action} sandboxes (by id or name)`).action(
      (refs: string[], _o: unknown, cmd: Command) => act(cmd, (ctx) => handlers.lifecycle(ctx, { action, refs })),
    );
  const defineRemove = (parent: Command, nameAndArgs: string) =>
    sub(parent, nameAndArgs, 'delete sandboxes with their files; prints each ref')
      .option('-f, --force', 'delete running sandboxes too')
      .action((refs: string[], o: { force?: boolean }, cmd: Command) =>
        act(cmd, (ctx) => handlers.remove(ctx, { refs, force: !!o.force })),
      );

  defineCreate(program, 'create', false);
  defineList(program, 'ls').alias('list');
  sub(program, 'info <ref>', 'show one sandbox')
    .option('--json', 'print JSON')
    .action((ref: string, o: { json?: boolean }, cmd: Command) =>
      act(cmd, (ctx) => handlers.info(ctx, { ref, json: !!o.json })),
    );
  defineLifecycle(program, 'start');
  defineLifecycle(program, 'stop');
  defineLifecycle(program, 'restart');
  defineLifecycle(program, 'pause');
  defineLifecycle(program, 'resume');
  defineRemove(program, 'rm <ref...>');

  const instance = sub(program, 'instance', "sandboxes in Velda's words: create, list, start, stop, restart, delete");
  defineCreate(instance, 'create [name]', true);
  defineList(instance, 'list').alias('ls');
  defineLifecycle(instance, 'start');
  defineLifecycle(instance, 'stop');
  defineLifecycle(instance, 'restart');
  defineRemove(instance, 'delete <ref...>').alias('rm');

  sub(
    program,
    'timeout <ref> <seconds>',
    "set a sandbox's timeout from now (0 = none); its --on-timeout action runs then",
  ).action((ref: string, seconds: string, _o: unknown, cmd: Command) =>
    act(cmd, (ctx) => handlers.timeout(ctx, { ref, timeoutMs: parseSecondsArgument(seconds) })),
  );

  sub(
    program,
    'idle-timeout <ref> <seconds>',
    'pause a sandbox after this many seconds without activity (0 = never); the next request wakes it',
  ).action((ref: string, seconds: string, _o: unknown, cmd: Command) =>
    act(cmd, (ctx) => handlers.idleTimeout(ctx, { ref, idleTimeoutMs: parseSecondsArgument(seconds) })),
  );

  // ---- snapshots and images ----
  const snapshot = sub(program, 'snapshot', "snapshots of sandboxes in the daemon's object store: create, ls, rm");
  sub(snapshot, 'create <ref>', "store the sandbox's files (and on runsc its memory); it keeps running")
    .option('--name <name>', 'unique snapshot name, e.g. before-upgrade')
    .option('--json', 'print the snapshot as JSON instead of its id')
    .action((ref: string, o: { name?: string; json?: boolean }, cmd: Command) =>
      act(cmd, (ctx) =>
        handlers.snapshotCreate(ctx, { ref, json: !!o.json, ...(o.name !== undefined ? { name: o.name } : {}) }),
      ),
    );
  sub(snapshot, 'ls', 'list snapshots (every daemon sharing the object store sees the same)')
    .alias('list')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }, cmd: Command) => act(cmd, (ctx) => handlers.snapshotList(ctx, { json: !!o.json })));
  sub(snapshot, 'rm <ref...>', 'delete snapshots by id or name')
    .alias('delete')
    .action((refs: string[], _o: unknown, cmd: Command) => act(cmd, (ctx) => handlers.snapshotRemove(ctx, { refs })));

  const image = sub(program, 'image', 'images sandboxes start from: create --from-instance, rm (list: `den images`)');
  sub(image, 'create <name>', "a new image whose top layer is a sandbox's files (the sandbox keeps running)")
    .requiredOption('--from-instance <ref>', 'the sandbox (id or name) to commit')
    .option('--json', 'print the image as JSON')
    .action((name: string, o: { fromInstance: string; json?: boolean }, cmd: Command) =>
      act(cmd, (ctx) => handlers.imageCreate(ctx, { name, fromSandbox: o.fromInstance, json: !!o.json })),
    );
  sub(image, 'rm <name...>', 'remove images no sandbox uses')
    .alias('delete')
    .action((names: string[], _o: unknown, cmd: Command) => act(cmd, (ctx) => handlers.imageRemove(ctx, { names })));

  // ---- API keys ----
  const key = sub(program, 'key', 'API keys for the E2B-compatible API (E2B_API_KEY): create, ls, rm');
  sub(key, 'create', 'create an API key and print it (shown only once)')
    .requiredOption('--name <name>', "unique name of the key (letters, digits, '.', '_', '-')")
    .option('--json', 'print name, key and creation time as JSON')
    .action((o: { name: string; json?: boolean }, cmd: Command) =>
      act(cmd, (ctx) => handlers.keyCreate(ctx, { name: o.name, json: !!o.json })),
    );
  sub(key, 'ls', 'list API keys (names and times; den keeps no key, only its hash)')
    .alias('list')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }, cmd: Command) => act(cmd, (ctx) => handlers.keyList(ctx, { json: !!o.json })));
  sub(key, 'rm <name...>', 'remove API keys; requests with them fail from then on')
    .alias('delete')
    .action((names: string[], _o: unknown, cmd: Command) => act(cmd, (ctx) => handlers.keyRemove(ctx, { names })));

  // ---- network and previews ----
  sub(program, 'ports <ref>', 'TCP ports listening in a sandbox, with their preview URLs')
    .option('--json', 'print JSON')
    .action((ref: string, o: { json?: boolean }, cmd: Command) =>
      act(cmd, (ctx) => handlers.ports(ctx, { ref, json: !!o.json })),
    );
  sub(program, 'network <ref> <policy>', 'change the egress policy of a sandbox: none, allowlist or full')
    .option('--allow <cidr|domain>', 'with allowlist: an IPv4 CIDR or a domain name (repeatable)', collect, [])
    .action((ref: string, policy: string, o: { allow: string[] }, cmd: Command) =>
      act(cmd, (ctx) => handlers.network(ctx, { ref, policy: parsePolicy(policy), allow: o.allow })),
    );

  sub(
    program,
    'preview <ref> [dir]',
    'live preview: upload DIR (or --git URL), install, start the dev server, print its URL',
  )
    .option('--git <url>', 'clone this repository in the sandbox instead of uploading')
    .option('--dir <path>', 'project directory inside the sandbox', '/home/user/app')
    .option('--restart', 'restart the dev server started before, without installing')
    .option('--json', 'print the app as JSON')
    .action(
      (
        ref: string,
        localDir: string | undefined,
        o: { git?: string; dir: string; restart?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        if (localDir && o.git) throw new UsageError('give a local directory or --git, not both');
        return act(cmd, (ctx) =>
          handlers.preview(ctx, {
            ref,
            dir: o.dir,
            restart: !!o.restart,
            json: !!o.json,
            ...(localDir ? { localDir } : {}),
            ...(o.git ? { git: o.git } : {}),
          }),
        );
      },
    );
  sub(program, 'logs <ref>', "the live preview app's log (install and dev server)")
    .option('-f, --follow', 'keep printing new lines')
    .option('-n, --lines <n>', 'lines from the end to start with', parsePositiveInteger)
    .action((ref: string, o: { follow?: boolean; lines?: number }, cmd: Command) =>
      act(cmd, (ctx) => handlers.logs(ctx, { ref, follow: !!o.follow, ...(o.lines ? { lines: o.lines } : {}) })),
    );

  // ---- processes and files ----
  sub(program, 'exec <ref> <cmd...>', 'run a command in a sandbox; exits with its exit code')
    .option('-u, --user <user>', 'user (name or uid) to run as')
    .option('-w, --workdir <dir>', 'working directory inside the sandbox')
    .option('-e, --env <KEY=VAL>', 'environment variable (repeatable)', collectPair('-e'))
    .option('--timeout <seconds>', 'kill the command after this many seconds (exit 124)', parseSeconds)
    .option('-i, --interactive', 'forward stdin to the command')
    .option('-t, --tty', 'run the command on a pseudo-terminal')
    .addHelpText(
      'after',
      '\nPut the command after `--` when it has options of its own:\n  den exec dev -- ls -l /\n  den exec -it dev -- python3',
    )
    .action((ref: string, cmdArgs: string[], o: ExecFlags, cmd: Command) =>
      act(cmd, (ctx) =>
        handlers.exec(ctx, {
          ref,
          cmd: cmdArgs,
          env: o.env ?? {},
          interactive: !!o.interactive,
          tty: !!o.tty,
          ...(o.user ? { user: o.user } : {}),
          ...(o.workdir ? { cwd: o.workdir } : {}),
          ...(o.timeout !== undefined ? { timeoutMs: o.timeout } : {}),
        }),
      ),
    );
  sub(program, 'run <ref> [cmd...]', 'open an interactive login shell (or CMD) on a terminal in a sandbox')
    .option('-u, --user <user>', 'user (name or uid) to run as')
    .option('-w, --workdir <dir>', 'working directory inside the sandbox')
    .option('-e, --env <KEY=VAL>', 'environment variable (repeatable)', collectPair('-e'))
    .action((ref: string, cmdArgs: string[], o: Omit<ExecFlags, 'interactive' | 'tty' | 'timeout'>, cmd: Command) =>
      act(cmd, (ctx) =>
        handlers.run(ctx, {
          ref,
          cmd: cmdArgs,
          env: o.env ?? {},
          ...(o.user ? { user: o.user } : {}),
          ...(o.workdir ? { cwd: o.workdir } : {}),
        }),
      ),
    );
  sub(program, 'cp <src> <dst>', 'copy a file into or out of a sandbox; one side is REF:/abs/path')
    .addHelpText(
      'after',
      '\nExamples:\n  den cp ./app.tar dev:/home/user/      upload (a path ending in / keeps the name)\n' +
        '  den cp dev:/var/log/syslog .           download\n  den cp - dev:/tmp/in.txt               from stdin',
    )
    .action((src: string, dst: string, _o: unknown, cmd: Command) =>
      act(cmd, (ctx) => handlers.cp(ctx, parseCpArgs(src, dst))),
    );

  return program;
}

/**
 * `--url`, `--home`, `--listen` on a command; returns it for chaining. Listed in the help of `den` itself, hidden
 * in the help of subcommands, which accept them too.
 */
function addGlobalOptions(cmd: Command, hidden = true): Command {
  const options = [
    new Option('--url <url>', 'den daemon URL (env DEN_URL; default: derived from --listen)'),
    new Option('--home <dir>', 'daemon data directory for `den up` (env DEN_HOME; default /var/lib/den)'),
    new Option('--listen <host:port>', 'daemon listen address (env DEN_LISTEN; default 127.0.0.1:7070)'),
  ];
  for (const option of options) cmd.addOption(hidden ? option.hideHelp() : option);
  return cmd;
}

/** The global flags given anywhere on the command line; the one nearest the subcommand wins. */
export function globalFlags(cmd: Command): GlobalOptions {
  const flags: GlobalOptions = {};
  for (let c: Command | null = cmd; c; c = c.parent) {
    const o = c.opts<GlobalOptions>();
    for (const key of ['url', 'home', 'listen'] as const) {
      if (flags[key] === undefined && o[key] !== undefined) flags[key] = o[key];
    }
  }
  return flags;
}

interface CreateFlags {
  name?: string;
  image?: string;
  runtime?: 'runsc' | 'runc';
  cpus?: number;
  memory?: number;
  disk?: number;
  pids?: number;
  env?: Record<string, string>;
  metadata?: Record<string, string>;
  network?: NetworkPolicyName;
  allow: string[];
  publicPreview?: boolean;
  timeout?: number;
  onTimeout?: OnTimeoutAction;
  fromSnapshot?: string;
  idleTimeout?: number;
  json?: boolean;
}

interface ExecFlags {
  user?: string;
  workdir?: string;
  env?: Record<string, string>;
  timeout?: number;
  interactive?: boolean;
  tty?: boolean;
}

function addCreateOptions(cmd: Command): Command {
  return cmd
    .option('--name <name>', 'unique name, e.g. dev (lowercase letters, digits, inner hyphens)')
    .option('--image <image>', 'image to start from (default base; see `den images`)')
    .addOption(new Option('--runtime <runtime>', 'runsc (gVisor, default) or runc').choices(['runsc', 'runc']))
    .option('--cpus <n>', 'CPU limit, e.g. 0.5 or 2', parsePositiveNumber)
    .option('--memory <MB>', 'memory limit in MiB', parsePositiveInteger)
    .option('--disk <MB>', 'disk limit in MiB', parsePositiveInteger)
    .option('--pids <n>', 'process limit', parsePositiveInteger)
    .option('-e, --env <KEY=VAL>', 'environment variable for every process (repeatable)', collectPair('-e'))
    .option('--metadata <key=value>', 'label (repeatable)', collectPair('--metadata'))
    .addOption(
      new Option(
        '--network <policy>',
        "egress: none, allowlist (with --allow) or full (default: the daemon's)",
      ).choices(NETWORK_POLICIES),
    )
    .option('--allow <cidr|domain>', 'with --network allowlist: an IPv4 CIDR or domain name (repeatable)', collect, [])
    .option('--public-preview', 'preview URLs work without the preview token')
    .option(
      '--timeout <seconds>',
      'run the --on-timeout action this many seconds after creation (0 = never)',
      parseSeconds,
    )
    .addOption(
      new Option(
        '--on-timeout <action>',
        'at the timeout: delete (default), stop (files kept), or pause (stops, files kept, until den pauses with memory)',
      ).choices(['delete', 'stop', 'pause']),
    )
    .option(
      '--idle-timeout <seconds>',
      'pause after this many seconds without activity (requests, sessions, CPU use); the next request wakes it',
      parseSeconds,
    )
    .option(
      '--from-snapshot <snapshot>',
      'start from a snapshot (id or name): its files, its processes when it has memory, its image and limits',
    )
    .option('--json', 'print the sandbox as JSON instead of its id');
}

function createArgs(o: CreateFlags, positionalName: string | undefined): CreateArgs {
  const args: CreateArgs = { env: o.env ?? {}, metadata: o.metadata ?? {}, json: !!o.json };
  const name = positionalName ?? o.name;
  if (name !== undefined) args.name = name;
  if (o.image !== undefined) args.image = o.image;
  if (o.runtime !== undefined) args.runtime = o.runtime;
  if (o.cpus !== undefined) args.cpus = o.cpus;
  if (o.memory !== undefined) args.memoryMB = o.memory;
  if (o.disk !== undefined) args.diskMB = o.disk;
  if (o.pids !== undefined) args.pids = o.pids;
  if (o.allow.length && o.network !== 'allowlist') {
    throw new UsageError('--allow needs --network allowlist');
  }
  if (o.network !== undefined) args.network = { policy: o.network, ...(o.allow.length ? { allow: o.allow } : {}) };
  if (o.publicPreview) args.preview = { public: true };
  if (o.onTimeout !== undefined && !o.timeout) throw new UsageError('--on-timeout needs --timeout SECONDS');
  if (o.timeout !== undefined) args.timeoutMs = o.timeout;
  if (o.onTimeout !== undefined) args.onTimeout = o.onTimeout;
  if (o.fromSnapshot !== undefined) args.fromSnapshot = o.fromSnapshot;
  if (o.idleTimeout) args.idleTimeoutMs = o.idleTimeout;
  return args;
}

const NETWORK_POLICIES: NetworkPolicyName[] = ['none', 'allowlist', 'full'];

function parsePolicy(text: string): NetworkPolicyName {
  if (!(NETWORK_POLICIES as string[]).includes(text)) {
    throw new UsageError(`network policy "${text}" must be one of ${NETWORK_POLICIES.join(', ')}`);
  }
  return text as NetworkPolicyName;
}

/** A commander option parser that collects a repeated option into a list. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Parses `KEY=VAL` (the value may contain `=` or be empty). */
export function parsePair(text: string, flag: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`give ${flag} as KEY=VALUE, e.g. ${flag} FOO=bar`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** A commander option parser that collects repeated `KEY=VAL` into an object (the last value for a key wins). */
function collectPair(flag: string) {
  return (text: string, previous: Record<string, string> | undefined): Record<string, string> => {
    const [key, value] = parsePair(text, flag);
    return { ...previous, [key]: value };
  };
}

export function parsePositiveNumber(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('give a positive number');
  return n;
}

export function parsePositiveInteger(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n <= 0) throw new InvalidArgumentError('give a positive whole number');
  return n;
}

/** A SECONDS argument (not an option): the same rules as parseSeconds, reported as a usage error. */
function parseSecondsArgument(text: string): number {
  try {
    return parseSeconds(text);
  } catch {
    throw new UsageError(`"${text}" is not a number of seconds: give e.g. 300, 0.5, or 0 for no timeout`);
  }
}

/** `--timeout 1.5` -> 1500 (ms); fractions allowed, 0 means no timeout. */
export function parseSeconds(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError('give a number of seconds, e.g. 30 or 0.5');
  }
  return Math.round(n * 1000);
}
