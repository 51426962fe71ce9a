import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpGet } from '@den/e2e';
import { Sandbox } from '@den/sdk';
import type { RawRuntime } from './raw.js';
import { type Summary, summarize, timeIt } from './stats.js';

export interface PauseFigures {
  pause: Summary;
  resumeToExec: Summary;
  wakeByPreview: Summary;
}

/** The server both the den sandbox and the raw container run. */
const SERVER = "require('http').createServer((q, r) => r.end('ok')).listen(8000, '0.0.0.0');";

/**
 * Pause with memory on runsc, for a small sandbox running a Node HTTP server: `pause`, resume to the first
 * successful exec (`sbx.resume()` + `true` run directly, as the other exec figures: a string command would add a
 * `bash -l` start, ~150-250 ms under gVisor, which is not the resume), and the first response of a preview request
 * that wakes the paused sandbox by itself.
 */
export async function pauseResume(url: string, n: number): Promise<PauseFigures> {
  const sbx = await Sandbox.create({ url, runtime: 'runsc', memoryMB: 512 });
  try {
    // An HTTP/1.1 server, as dev servers are: the proxy keeps a connection into it between requests, which the pause
    // closes.
    await sbx.files.write('/tmp/server.js', SERVER);
    // A server as users start one in a shell; a background command started through den would be kept as well.
    await sbx.commands.run('nohup node /tmp/server.js >/dev/null 2>&1 &');
    await sbx.ports.waitFor(8000);
    await sbx.ports.waitFor(8000);
    const pause: number[] = [];
    const resume: number[] = [];
    const wake: number[] = [];
    for (let i = 0; i < n; i++) {
      pause.push(await timeIt(() => sbx.pause()));
      resume.push(
        await timeIt(async () => {
          await sbx.resume();
          await sbx.commands.run(['true']);
        }),
      );
      await sbx.pause();
      const base = new URL(url);
      wake.push(
        await timeIt(async () => {
          const res = await httpGet(base.origin, '/index.html', {
            host: sbx.getHost(8000),
            'x-den-preview-token': sbx.previewToken,
          });
          if (res.status !== 200) throw new Error(`wake by preview: HTTP ${res.status} ${res.body.slice(0, 200)}`);
        }),
      );
    }
    return { pause: summarize(pause), resumeToExec: summarize(resume), wakeByPreview: summarize(wake) };
  } finally {
    await sbx.kill();
  }
}

/**
 * The raw baseline of a pause and a resume: `runsc checkpoint` and `runsc restore` + `runsc exec true` of a container
 * with what a den sandbox of the den figures holds, two Node processes (den's agent and the app's server), without
 * den (no agent to close and wake, no network to restore, no disk file).
 */
export async function rawPauseResume(
  raw: RawRuntime,
  n: number,
): Promise<Pick<PauseFigures, 'pause' | 'resumeToExec'>> {
  const id = 'bench-raw-pause';
  const image = await mkdtemp(join(tmpdir(), 'den-bench-raw-image-'));
  try {
    await raw.start(id, ['sh', '-c', `node -e "${SERVER}" & exec node -e "setInterval(() => {}, 1 << 30)"`]);
    // both Node processes started (the server listens)
    await raw.exec(id, ['sh', '-c', 'until grep -q ":1F40 " /proc/net/tcp; do sleep 0.05; done']);
    const pause: number[] = [];
    const resume: number[] = [];
    for (let i = 0; i < n; i++) {
      await rm(image, { recursive: true, force: true });
      pause.push(await timeIt(() => raw.checkpoint(id, image)));
      // Not timed: runsc's delete waits ~1.5 s for the host to reap the stopped sandbox (den removes it by itself).
      await raw.delete(id);
      resume.push(
        await timeIt(async () => {
          await raw.restore(id, image);
          await raw.exec(id, ['true']);
        }),
      );
    }
    return { pause: summarize(pause), resumeToExec: summarize(resume) };
  } finally {
    await raw.delete(id).catch(() => undefined);
    await rm(image, { recursive: true, force: true });
  }
}
