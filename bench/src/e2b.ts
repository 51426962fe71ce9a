import { Sandbox as DenSandbox } from '@den/sdk';
import { Sandbox as E2BSandbox } from 'e2b';
import { type Summary, summarize, timeIt } from './stats.js';

export interface E2bFigures {
  createAndRun: { den: Summary; raw: Summary };
  concurrent: { commands: number; sandboxes: number; failures: number; ms: number };
}

/**
 * The e2b SDK against den beside den's own SDK, interleaved: `Sandbox.create` + `commands.run('echo hi')`
 * (E2B: the template `base`; den: the base image; both runsc), then 20 concurrent `commands.run` across 10
 * sandboxes through the e2b SDK.
 */
export async function e2bOverhead(url: string, apiKey: string, n: number): Promise<E2bFigures> {
  const e2bOpts = { apiKey, apiUrl: `${url}/e2b`, sandboxUrl: `${url}/e2b` } as const;
  const den: number[] = [];
  const e2b: number[] = [];
  for (let i = 0; i < n; i++) {
    let e2bSbx: E2BSandbox | undefined;
    e2b.push(
      await timeIt(async () => {
        e2bSbx = await E2BSandbox.create('base', e2bOpts);
        const r = await e2bSbx.commands.run('echo hi');
        if (r.stdout !== 'hi\n') throw new Error(`e2b: unexpected output ${JSON.stringify(r.stdout)}`);
      }),
    );
    await e2bSbx?.kill();
    let denSbx: DenSandbox | undefined;
    den.push(
      await timeIt(async () => {
        denSbx = await DenSandbox.create({ url, runtime: 'runsc' });
        const r = await denSbx.commands.run('echo hi');
        if (r.stdout !== 'hi\n') throw new Error(`den: unexpected output ${JSON.stringify(r.stdout)}`);
      }),
    );
    await denSbx?.kill();
  }

  const sandboxes = await Promise.all(Array.from({ length: 10 }, () => E2BSandbox.create('base', e2bOpts)));
  let failures = 0;
  let ms = 0;
  try {
    ms = await timeIt(() =>
      Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const r = await sandboxes[i % 10]!.commands.run(`echo run-${i}`).catch(() => undefined);
          if (r?.stdout !== `run-${i}\n`) failures++;
        }),
      ),
    );
  } finally {
    await Promise.all(sandboxes.map((s) => s.kill()));
  }
  return {
    createAndRun: { den: summarize(e2b), raw: summarize(den) },
    concurrent: { commands: 20, sandboxes: 10, failures, ms: Math.round(ms) },
  };
}
