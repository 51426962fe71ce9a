import { DenClient, Sandbox } from '@den/sdk';
import { json } from '../output.js';
import type { Context, LogsArgs, PreviewArgs } from '../program.js';
import { Spinner } from '../progress.js';

/**
 * `den preview REF [DIR]`: uploads DIR (or clones --git), installs, starts the dev server and prints its preview
 * URL. While it works, the spinner shows the app log's latest line.
 */
export async function preview(ctx: Context, args: PreviewArgs): Promise<number> {
  const sbx = await Sandbox.connect(args.ref, { url: ctx.config.url });
  const spinner = new Spinner(ctx.stderr, 'starting').start();
  const follower = new AbortController();
  try {
    if (args.localDir) {
      spinner.update(`uploading ${args.localDir}`);
      await sbx.app.upload(args.localDir, args.dir);
    }
    spinner.update('installing and starting');
    void showLatestLogLine(sbx, spinner, follower.signal);
    const app = await sbx.app.start({
      dir: args.dir,
      ...(args.git ? { git: args.git } : {}),
      ...(args.restart ? { restart: true } : {}),
    });
    spinner.stop();
    if (args.json) {
      ctx.stdout.write(json(app));
    } else {
      const info = await sbx.info();
      const token = info.preview.public ? '' : `?den_preview_token=${info.preview.token}`;
      ctx.stdout.write(`${app.urls.host}${token}\n`);
      ctx.stderr.write(
        `${app.kind} app on port ${app.port}; also at ${app.urls.path}; logs: den logs ${args.ref} -f\n`,
      );
    }
    return 0;
  } finally {
    follower.abort();
    spinner.stop();
  }
}

async function showLatestLogLine(sbx: Sandbox, spinner: Spinner, signal: AbortSignal): Promise<void> {
  try {
    for await (const line of sbx.app.logs({ follow: true, lines: 1 }, { signal })) {
      if (line.trim()) spinner.update(line.trim().slice(0, 70));
    }
  } catch {
    // the log is only decoration here; start() reports failures
  }
}

/** `den logs REF [-f]`: the live preview app's log. */
export async function logs(ctx: Context, args: LogsArgs): Promise<number> {
  const client = new DenClient({ url: ctx.config.url });
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    for await (const line of client.appLogs(
      args.ref,
      { follow: args.follow, ...(args.lines ? { lines: args.lines } : {}) },
      { signal: stop.signal },
    )) {
      ctx.stdout.write(`${line}\n`);
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    process.off('SIGINT', onSignal);
  }
  return 0;
}
