import { destroyDaemon, leftovers, startDaemon, waitFor } from '@den/e2e';
import { DenClient, Sandbox } from '@den/sdk';
import { type Summary, summarize, timeIt } from './stats.js';

/**
 * Create to first exec from a warm pool of one sandbox per runtime: each sample waits until the pool refilled, then
 * times `Sandbox.create` + `commands.run('true')`. The daemon drains its pool before it stops.
 */
export async function warmPoolCreate(n: number): Promise<Record<'runsc' | 'runc', Summary>> {
  let daemon = await startDaemon({ env: { DEN_WARM_POOL: 'base/runc=1,base/runsc=1' } });
  const full = async (runtime: string) =>
    ((await new DenClient({ url: daemon.url }).status()).warmPool[`base/${runtime}`] ?? 0) >= 1;
  try {
    const out = {} as Record<'runsc' | 'runc', Summary>;
    for (const runtime of ['runsc', 'runc'] as const) {
      const samples: number[] = [];
      for (let i = 0; i < n; i++) {
        await waitFor(() => full(runtime), 'the warm pool to refill', 60_000);
        let sbx: Sandbox | undefined;
        samples.push(
          await timeIt(async () => {
            sbx = await Sandbox.create({ url: daemon.url, runtime });
            await sbx.commands.run(['true']);
          }),
        );
        await sbx?.kill();
      }
      out[runtime] = summarize(samples);
    }
    return out;
  } finally {
    daemon = await daemon.restart({ DEN_WARM_POOL: '' });
    await waitFor(
      async () => Object.keys((await new DenClient({ url: daemon.url }).status()).warmPool).length === 0,
      'the pool to drain',
      60_000,
    );
    await waitFor(() => leftovers(daemon.home).length === 0, 'the pooled sandboxes to be gone', 60_000);
    await destroyDaemon(daemon);
  }
}
