import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { destroyDaemon, REPO_ROOT, startDaemon, type TestDaemon } from '@den/e2e';
import { DenClient, Sandbox } from '@den/sdk';
import { e2bOverhead } from './e2b.js';
import { idleMemoryMiB } from './memory.js';
import { pauseResume, rawPauseResume } from './pause.js';
import { warmPoolCreate } from './pool.js';
import { networkStepTimes, proxyOverhead } from './proxy.js';
import { RawRuntime } from './raw.js';
import { type Summary, sample, summarize, timeIt } from './stats.js';

/**
 * `npm run bench`: den's figures beside the raw runtime's, measured in the same run on the same machine, for
 * runsc and runc. Writes bench/results/latest.json. Sample counts are small enough for a 2-core machine
 * (DEN_BENCH_N scales them).
 */
const SCALE = Number(process.env.DEN_BENCH_N ?? 1);
const N = {
  lifecycle: Math.round(10 * SCALE),
  exec: Math.round(100 * SCALE),
  small: Math.round(20 * SCALE),
  big: 3,
  idle: 5,
  proxy: Math.round(300 * SCALE),
  e2b: Math.round(5 * SCALE),
  pause: Math.round(10 * SCALE),
  pool: Math.round(10 * SCALE),
};
/** Which groups run (comma list in DEN_BENCH_SUITES): core (lifecycle, exec, files, memory), network, e2b, pause, pool. */
const SUITES = new Set((process.env.DEN_BENCH_SUITES ?? 'core,network,e2b,pause,pool').split(','));
const RUNSC = process.env.DEN_RUNSC ?? '/var/lib/den/tools/runsc/usr/bin/runsc';
const MiB = 1024 * 1024;

interface Row {
  metric: string;
  unit: string;
  den: Summary | number;
  raw: Summary | number;
  target?: string;
}

async function baseLayerDir(): Promise<string> {
  const manifest = JSON.parse(await readFile('/var/lib/den/store/images/base.json', 'utf8')) as { layers: string[] };
  return join('/var/lib/den/store/layers/sha256', manifest.layers[0]!.replace('sha256:', ''));
}

async function benchNetwork(runtime: 'runsc' | 'runc', daemon: TestDaemon): Promise<Row[]> {
  // Network setup as the daemon timed it inside each create/start (namespace, veth, address, nft rules).
  const since = daemon.logs.length;
  for (let i = 0; i < N.lifecycle; i++) await (await Sandbox.create({ url: daemon.url, runtime })).kill();
  const setup = networkStepTimes(daemon.logs, since);
  const proxy = await proxyOverhead(daemon.url, runtime, N.proxy);
  return [
    { metric: 'network setup in create (own time)', unit: 'ms', den: summarize(setup.own), raw: 0 },
    {
      metric: 'network setup: time added to create',
      unit: 'ms',
      den: summarize(setup.added),
      raw: 0,
      target: 'den p50 <= 30 ms',
    },
    {
      metric: 'preview GET via proxy (raw: direct)',
      unit: 'ms',
      den: proxy.smallGet.den,
      raw: proxy.smallGet.raw,
      target: `den p50 <= 1.3x raw: ${(proxy.smallGet.den.p50 / proxy.smallGet.raw.p50).toFixed(2)}x`,
    },
    {
      metric: 'same GET via a bare Node relay (no den)',
      unit: 'ms',
      den: proxy.smallGet.bareRelay,
      raw: proxy.smallGet.raw,
      target: `floor of a Node relay: ${(proxy.smallGet.bareRelay.p50 / proxy.smallGet.raw.p50).toFixed(2)}x`,
    },
    {
      metric: 'preview 100 MiB download',
      unit: 'MiB/s',
      den: Number(proxy.download.den.toFixed(0)),
      raw: Number(proxy.download.raw.toFixed(0)),
      target: `den >= 70% of raw: ${((100 * proxy.download.den) / proxy.download.raw).toFixed(0)}%`,
    },
  ];
}

async function benchE2b(url: string): Promise<Row[]> {
  const { key } = await new DenClient({ url }).createApiKey(`bench-${Date.now()}`);
  const f = await e2bOverhead(url, key, N.e2b);
  return [
    {
      metric: 'e2b create+run (raw: den SDK)',
      unit: 'ms',
      den: f.createAndRun.den,
      raw: f.createAndRun.raw,
      target: `e2b p50 <= 1.5x den SDK: ${(f.createAndRun.den.p50 / f.createAndRun.raw.p50).toFixed(2)}x`,
    },
    {
      metric: '20 concurrent runs / 10 sandboxes',
      unit: 'fail',
      den: f.concurrent.failures,
      raw: 0,
      target: `0 failures (${f.concurrent.ms} ms)`,
    },
  ];
}

async function benchPool(): Promise<Row[]> {
  const f = await warmPoolCreate(N.pool);
  return (['runsc', 'runc'] as const).map((runtime) => ({
    metric: `create to first exec from the pool (${runtime})`,
    unit: 'ms',
    den: f[runtime],
    raw: 0,
    target: 'den p50 <= 50 ms',
  }));
}

async function benchPause(url: string, rootfs: string): Promise<Row[]> {
  const f = await pauseResume(url, N.pause);
  const raw = await RawRuntime.create('runsc', RUNSC, rootfs);
  const r = await rawPauseResume(raw, N.pause).finally(() => raw.cleanup());
  return [
    { metric: 'pause (memory)', unit: 'ms', den: f.pause, raw: r.pause, target: 'den p50 <= 300 ms' },
    {
      metric: 'resume to first exec',
      unit: 'ms',
      den: f.resumeToExec,
      raw: r.resumeToExec,
      target: 'den p50 <= 300 ms',
    },
    { metric: 'preview request waking it', unit: 'ms', den: f.wakeByPreview, raw: 0, target: 'den p50 <= 600 ms' },
  ];
}

async function benchRuntime(runtime: 'runsc' | 'runc', url: string, rootfs: string): Promise<Row[]> {
  const rows: Row[] = [];
  const payload1 = Buffer.alloc(MiB, 1);
  const payload100 = Buffer.alloc(100 * MiB, 2);
  const raw = await RawRuntime.create(runtime, runtime === 'runsc' ? RUNSC : 'runc', rootfs);
  try {
    // Lifecycle: create -> first exec, stop, delete.
    const den = { cfe: [] as number[], stop: [] as number[], del: [] as number[] };
    for (let i = 0; i < N.lifecycle; i++) {
      let sbx!: Sandbox;
      den.cfe.push(
        await timeIt(async () => {
          sbx = await Sandbox.create({ url, runtime, memoryMB: 512 });
          await sbx.commands.run(['true']);
        }),
      );
      den.stop.push(await timeIt(() => sbx.stop()));
      await sbx.start();
      den.del.push(await timeIt(() => sbx.kill()));
    }
    const rawT = { cfe: [] as number[], stop: [] as number[], del: [] as number[] };
    for (let i = 0; i < N.lifecycle; i++) {
      const id = `raw${runtime}${String(i).padStart(4, '0')}`;
      rawT.cfe.push(
        await timeIt(async () => {
          await raw.start(id);
          await raw.exec(id, ['true']);
        }),
      );
      rawT.stop.push(await timeIt(() => raw.stop(id)));
      rawT.del.push(await timeIt(() => raw.delete(id)));
    }
    const target = runtime === 'runsc' ? 'den p50 <= 400 ms' : 'den p50 <= 150 ms';
    rows.push({
      metric: 'create to first exec',
      unit: 'ms',
      den: summarize(den.cfe),
      raw: summarize(rawT.cfe),
      target,
    });
    rows.push({ metric: 'stop', unit: 'ms', den: summarize(den.stop), raw: summarize(rawT.stop) });
    rows.push({ metric: 'delete', unit: 'ms', den: summarize(den.del), raw: summarize(rawT.del) });

    // Exec round trip and files, in one long-lived sandbox / raw container.
    const sbx = await Sandbox.create({ url, runtime, memoryMB: 1024, diskMB: 2048 });
    const rawId = `raw${runtime}exec0001`;
    await raw.start(rawId);
    try {
      await sbx.commands.run(['true']);
      const execDen = await sample(N.exec, () => sbx.commands.run(['true']));
      const execRaw = await sample(Math.min(N.exec, 30), () => raw.exec(rawId, ['true']));
      rows.push({
        metric: 'exec round trip (true)',
        unit: 'ms',
        den: summarize(execDen),
        raw: summarize(execRaw),
        target: runtime === 'runsc' ? 'den p50 <= 5 ms' : undefined,
      });
      for (const [label, data, n] of [
        ['file write+read 1 MiB', payload1, N.small],
        ['file write+read 100 MiB', payload100, N.big],
      ] as const) {
        const d = await sample(n, async () => {
          await sbx.files.write('/home/user/bench.bin', data);
          const back = await sbx.files.read('/home/user/bench.bin', { format: 'bytes' });
          if (back.length !== data.length) throw new Error(`read ${back.length} bytes, wrote ${data.length}`);
        });
        const r = await sample(n, async () => {
          await raw.exec(rawId, ['sh', '-c', 'cat > /tmp/bench.bin'], data);
          const back = await raw.exec(rawId, ['cat', '/tmp/bench.bin']);
          if (back.length !== data.length) throw new Error(`raw read ${back.length} bytes`);
        });
        rows.push({ metric: label, unit: 'ms', den: summarize(d), raw: summarize(r) });
      }
    } finally {
      await sbx.kill();
      await raw.delete(rawId).catch(() => undefined);
    }

    // Idle memory per sandbox.
    const idle: Sandbox[] = [];
    const denMem = await idleMemoryMiB(N.idle, async () => {
      const sbx = await Sandbox.create({ url, runtime, memoryMB: 512 });
      idle.push(sbx);
      return `/den/${sbx.id}`;
    });
    await Promise.all(idle.map((s) => s.kill()));
    let k = 0;
    const rawMem = await idleMemoryMiB(N.idle, async () => {
      const id = `raw${runtime}idle${String(k++).padStart(4, '0')}`;
      await raw.start(id);
      return raw.cgroupPath(id);
    });
    rows.push({
      metric: 'idle memory per sandbox (PSS)',
      unit: 'MiB',
      den: Number(denMem.perSandbox.toFixed(1)),
      raw: Number(rawMem.perSandbox.toFixed(1)),
      target: runtime === 'runsc' ? 'den <= 40 MiB' : undefined,
    });
    rows.push({
      metric: 'idle memory, machine-wide PSS',
      unit: 'MiB',
      den: Number(denMem.machineWide.toFixed(1)),
      raw: Number(rawMem.machineWide.toFixed(1)),
    });
  } finally {
    await raw.cleanup();
  }
  return rows;
}

function fmt(v: Summary | number): string {
  if (typeof v === 'number') return v.toFixed(1).padStart(8);
  return `${v.p50.toFixed(1).padStart(8)} ${v.p95.toFixed(1).padStart(8)}`;
}

async function main(): Promise<void> {
  const rootfs = await baseLayerDir();
  const daemon = await startDaemon();
  const results: Record<string, Row[]> = {};
  const failed: string[] = [];
  try {
    const groups: [string, () => Promise<Row[]>][] = [];
    for (const runtime of ['runsc', 'runc'] as const) {
      if (SUITES.has('core')) groups.push([runtime, () => benchRuntime(runtime, daemon.url, rootfs)]);
      if (SUITES.has('network')) groups.push([`${runtime} network`, () => benchNetwork(runtime, daemon)]);
    }
    if (SUITES.has('e2b')) groups.push(['e2b (runsc)', () => benchE2b(daemon.url)]);
    if (SUITES.has('pause')) groups.push(['pause with memory (runsc)', () => benchPause(daemon.url, rootfs)]);
    if (SUITES.has('pool')) groups.push(['warm pool', () => benchPool()]);
    for (const [name, run] of groups) {
      console.log(`\n== ${name} ==`);
      const since = daemon.logs.length;
      try {
        results[name] = await run();
      } catch (err) {
        // One failing group does not cost the others' figures; what the daemon warned about during it is shown.
        failed.push(name);
        console.error(err);
        for (const line of daemon.logs.slice(since)) if (/"level":(40|50|60)/.test(line)) console.error(line);
        continue;
      }
      console.log(
        `${'metric'.padEnd(32)} ${'unit'.padEnd(4)} ${'den p50'.padStart(8)} ${'den p95'.padStart(8)} ${'raw p50'.padStart(8)} ${'raw p95'.padStart(8)}  target`,
      );
      for (const r of results[name]!) {
        console.log(`${r.metric.padEnd(32)} ${r.unit.padEnd(4)} ${fmt(r.den)} ${fmt(r.raw)}  ${r.target ?? ''}`);
      }
    }
  } finally {
    await destroyDaemon(daemon);
  }
  const out = join(REPO_ROOT, 'bench/results/latest.json');
  await writeFile(out, `${JSON.stringify({ at: new Date().toISOString(), results }, null, 2)}\n`);
  console.log(`\nwritten to ${out}`);
  if (failed.length) throw new Error(`benchmark groups failed: ${failed.join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
