import { DenClient } from '@den/sdk';
import { json, table } from '../output.js';
import type { Context, NetworkArgs, PortsArgs } from '../program.js';

/** `den ports REF`: what listens in the sandbox and where to open it. */
export async function ports(ctx: Context, args: PortsArgs): Promise<number> {
  const list = await new DenClient({ url: ctx.config.url }).listPorts(args.ref);
  if (args.json) {
    ctx.stdout.write(json(list));
    return 0;
  }
  if (list.length === 0) {
    ctx.stderr.write(`nothing listens on a TCP port in ${args.ref} yet\n`);
    return 0;
  }
  ctx.stdout.write(
    table(
      ['PORT', 'ADDRESS', 'PREVIEW URL'],
      list.map((p) => [String(p.port), p.address, p.reachable ? p.urls.host : '(loopback only: bind to 0.0.0.0)']),
    ),
  );
  return 0;
}

/** `den network REF POLICY [--allow X]...`. */
export async function network(ctx: Context, args: NetworkArgs): Promise<number> {
  const settings = { policy: args.policy, ...(args.allow.length ? { allow: args.allow } : {}) };
  const updated = await new DenClient({ url: ctx.config.url }).updateNetwork(args.ref, settings);
  const allow = updated.network.allow.length ? ` (${updated.network.allow.join(', ')})` : '';
  ctx.stdout.write(`${args.ref}: network ${updated.network.policy}${allow}\n`);
  return 0;
}
