import { DenClient } from '@den/sdk';
import type { Context, IdleTimeoutArgs, TimeoutArgs } from '../program.js';

/** `den timeout REF SECONDS`: sets the timeout from now (0 removes it) and prints when it passes. */
export async function timeout(ctx: Context, args: TimeoutArgs): Promise<number> {
  const s = await new DenClient({ url: ctx.config.url }).setSandboxTimeout(args.ref, args.timeoutMs);
  const action = s.onTimeout === 'stop' ? 'stopped' : 'deleted';
  ctx.stdout.write(s.timeoutAt ? `${args.ref}: ${action} at ${s.timeoutAt}\n` : `${args.ref}: no timeout\n`);
  return 0;
}

/** `den idle-timeout REF SECONDS`: sets (0 removes) the idle timeout; the idle clock restarts now. */
export async function idleTimeout(ctx: Context, args: IdleTimeoutArgs): Promise<number> {
  const s = await new DenClient({ url: ctx.config.url }).updateLifecycle(args.ref, {
    idleTimeoutMs: args.idleTimeoutMs,
  });
  ctx.stdout.write(
    s.idleTimeoutMs
      ? `${args.ref}: paused after ${s.idleTimeoutMs / 1000} s without activity\n`
      : `${args.ref}: no idle timeout\n`,
  );
  return 0;
}
