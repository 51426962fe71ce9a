import { DenClient } from '@den/sdk';
import { formatAge, json, listing } from '../output.js';
import type { Context, JsonArgs, KeyCreateArgs, KeyRemoveArgs } from '../program.js';

/**
 * `den key create --name NAME`: prints only the key on stdout (`export E2B_API_KEY=$(den key create --name ci)`);
 * it is shown this once, den keeps only its hash.
 */
export async function keyCreate(ctx: Context, args: KeyCreateArgs): Promise<number> {
  const created = await new DenClient({ url: ctx.config.url }).createApiKey(args.name);
  ctx.stdout.write(args.json ? json(created) : `${created.key}\n`);
  if (!args.json) ctx.stderr.write(`API key "${created.name}" created; den shows it only now, store it safely\n`);
  return 0;
}

/** `den key ls`: names and times, never the keys. */
export async function keyList(ctx: Context, args: JsonArgs): Promise<number> {
  const keys = await new DenClient({ url: ctx.config.url }).listApiKeys();
  ctx.stdout.write(
    listing(args.json, keys, ['NAME', 'CREATED', 'LAST USED'], (k) => [
      k.name,
      formatAge(k.createdAt),
      k.lastUsedAt ? formatAge(k.lastUsedAt) : 'never',
    ]),
  );
  return 0;
}

/** `den key rm NAME...`: prints each removed name. */
export async function keyRemove(ctx: Context, args: KeyRemoveArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  for (const name of args.names) {
    await client.deleteApiKey(name);
    ctx.stdout.write(`${name}\n`);
  }
  return 0;
}
