import { DenClient, Sandbox, type SandboxInfo } from '@den/sdk';
import { CliError } from '../errors.js';
import { formatAge, formatMB, json, listing } from '../output.js';
import type { Context, CreateArgs, InfoArgs, LifecycleArgs, ListArgs, RemoveArgs } from '../program.js';

/** `den create`: prints only the id on stdout (or the sandbox as JSON), so `id=$(den create)` works. */
export async function create(ctx: Context, args: CreateArgs): Promise<number> {
  const { json: asJson, env, metadata, ...rest } = args;
  const created = await new DenClient({ url: ctx.config.url }).createSandbox({
    ...rest,
    ...(Object.keys(env).length ? { env } : {}),
    ...(Object.keys(metadata).length ? { metadata } : {}),
  });
  ctx.stdout.write(asJson ? json(created) : `${created.id}\n`);
  return 0;
}

/** `den ls`. */
export async function list(ctx: Context, args: ListArgs): Promise<number> {
  const sandboxes = await Sandbox.list({ url: ctx.config.url, ...(args.state ? { state: args.state } : {}) });
  ctx.stdout.write(
    listing(args.json, sandboxes, ['ID', 'NAME', 'STATE', 'RUNTIME', 'IMAGE', 'CPUS', 'MEMORY', 'CREATED'], (s) => [
      s.id,
      s.name ?? '-',
      s.state,
      s.runtime,
      s.image,
      String(s.cpus),
      formatMB(s.memoryMB),
      formatAge(s.createdAt),
    ]),
  );
  return 0;
}

/** `den info REF`. */
export async function info(ctx: Context, args: InfoArgs): Promise<number> {
  const s = await new DenClient({ url: ctx.config.url }).getSandbox(args.ref);
  ctx.stdout.write(args.json ? json(s) : describe(s));
  return 0;
}

/** Key-value lines for `den info`. */
export function describe(s: SandboxInfo): string {
  const pairs: [string, string][] = [
    ['id', s.id],
    ['name', s.name ?? '-'],
    ['state', s.state === s.desiredState ? s.state : `${s.state} (-> ${s.desiredState})`],
    ['image', s.image],
    ['runtime', s.runtime],
    ['cpus', String(s.cpus)],
    ['memory', formatMB(s.memoryMB)],
    ['disk', formatMB(s.diskMB)],
    ['pids', String(s.pids)],
    [
      'network',
      `${s.network.policy}${s.network.allow.length ? ` (${s.network.allow.join(', ')})` : ''}, address ${s.network.address ?? '-'}`,
    ],
    ['preview', s.preview.public ? 'public' : `private (token ${s.preview.token})`],
    ['created', `${s.createdAt} (${formatAge(s.createdAt)})`],
    ['started', s.startedAt ? `${s.startedAt} (${formatAge(s.startedAt)})` : '-'],
  ];
  for (const [k, v] of Object.entries(s.env)) pairs.push([`env ${k}`, v]);
  for (const [k, v] of Object.entries(s.metadata)) pairs.push([`metadata ${k}`, v]);
  if (s.lastError) pairs.push(['last error', s.lastError]);
  const width = Math.max(...pairs.map(([k]) => k.length));
  return `${pairs.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`).join('\n')}\n`;
}

/** `den start|stop|restart REF...`: prints each ref once done, as docker does. */
export async function lifecycle(ctx: Context, args: LifecycleArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  const act = {
    start: client.startSandbox,
    stop: client.stopSandbox,
    restart: client.restartSandbox,
    pause: client.pauseSandbox,
    resume: client.resumeSandbox,
  }[args.action];
  for (const ref of args.refs) {
    const info = await act.call(client, ref);
    ctx.stdout.write(`${ref}${args.action === 'pause' ? pauseNote(info.pause) : ''}\n`);
  }
  return 0;
}

/** What a pause could not keep: memory (runc, or a failed checkpoint), or the connections it closed. */
function pauseNote(pause: SandboxInfo['pause']): string {
  if (!pause) return '';
  if (!pause.memory) return ` (filesystem only: ${pause.reason})`;
  return pause.reason ? ` (${pause.reason})` : '';
}

/**
 * `den rm REF...`: deletes sandboxes. A running sandbox is only deleted with --force, so a typo cannot throw away
 * someone's working environment (the daemon deletes running sandboxes directly; no stop is needed first).
 */
export async function remove(ctx: Context, args: RemoveArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  for (const ref of args.refs) {
    const { id, state } = await client.getSandbox(ref);
    if (state !== 'stopped' && state !== 'error' && !args.force) {
      throw new CliError(
        `sandbox ${ref} is ${state}: stop it first with \`den stop ${ref}\`, or use \`den rm --force ${ref}\``,
      );
    }
    await client.deleteSandbox(id);
    ctx.stdout.write(`${ref}\n`);
  }
  return 0;
}
