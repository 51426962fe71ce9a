import { DenClient } from '@den/sdk';
import type { Context, TimeoutArgs } from '../program.js';

/** `den timeout REF SECONDS`: sets the timeout from now (0 removes it) and prints when it passes. */
export async function timeout(ctx: Context, args: TimeoutArgs): Promise<number> {
  const s = await new DenClient({ url: ctx.config.url }).setSandboxTimeout(args.ref, args.timeoutMs);
  const action = s.onTimeout === 'stop' ? 'stopped' : 'deleted';
  ctx.stdout.write(s.timeoutAt ? `${args.ref}: ${action} at ${s.timeoutAt}\n` : `${args.ref}: no timeout\n`);
  return 0;
}
