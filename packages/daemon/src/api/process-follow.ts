import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import { DenError, type ErrorBody, encodeFrame, encodeJsonFrame, FrameDecoder, FrameType } from '@den/shared';
import type { AgentConnection } from '../services/ports.js';

type ProcessHandle = Awaited<ReturnType<AgentConnection['openProcess']>>;

export interface FollowDeps {
  /** defined while the sandbox is being paused or is paused (a process stream that breaks then may continue) */
  pausing(sandboxId: string): Promise<{ startedAt: string | null } | undefined>;
  /**
   * Resolves once the sandbox runs again: `restored` when its memory was restored (its processes continued), false
   * when it started afresh (another `startedAt`) or was stopped or deleted instead (the process is gone).
   */
  untilRunning(sandboxId: string, startedAt: string | null): Promise<{ restored: boolean }>;
  /** attaches to the process again, replaying its output from output frame `from` on */
  reconnect(sandboxId: string, pid: number, from: number): Promise<ProcessHandle>;
}

/**
 * The frame stream of a background process, kept across a pause with memory: a checkpoint cuts every connection
 * into the sandbox, so when the agent's stream breaks while the sandbox is pausing, the stream waits (the client's
 * request stays open) until the sandbox runs again and attaches to the process anew, replaying the output frames it
 * had not received yet (the agent numbers them). STARTED is sent once; EXIT or ERROR ends the stream. A break for
 * any other reason, or a pause that did not keep the process, ends it with an ERROR frame.
 */
export function followProcess(
  first: ProcessHandle,
  sandboxId: string,
  deps: FollowDeps,
): { stream: Readable; close(): void } {
  const out = new PassThrough();
  let current = first;
  let closed = false;
  let pid: number | undefined;
  let outputFrames = 0;

  const close = () => {
    closed = true;
    current.close();
  };
  out.once('close', close);

  const write = async (frame: Buffer): Promise<void> => {
    if (!out.write(frame) && !closed) await once(out, 'drain').catch(() => undefined);
  };

  /** Relays one agent stream; true when the process stream is over (EXIT or ERROR), false when it broke. */
  const relay = async (handle: ProcessHandle, sendStarted: boolean): Promise<boolean> => {
    const decoder = new FrameDecoder();
    try {
      for await (const chunk of handle.stream as AsyncIterable<Buffer>) {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === FrameType.STARTED) {
            pid ??= (JSON.parse(Buffer.from(frame.payload).toString('utf8')) as { pid: number }).pid;
            if (!sendStarted) continue;
          }
          if (frame.type === FrameType.STDOUT || frame.type === FrameType.STDERR) outputFrames++;
          await write(encodeFrame(frame.type, frame.payload));
          if (frame.type === FrameType.EXIT || frame.type === FrameType.ERROR) return true;
        }
      }
    } catch {
      // broken: decided below
    }
    return false;
  };

  const fail = (body: ErrorBody) => out.end(encodeJsonFrame(FrameType.ERROR, body));

  void (async () => {
    let handle = first;
    for (let attempt = 0; ; attempt++) {
      const over = await relay(handle, attempt === 0);
      if (over || closed) return out.end();
      const pause = await deps.pausing(sandboxId).catch(() => undefined);
      if (pid === undefined || !pause) {
        return fail({ code: 'AGENT_UNAVAILABLE', message: 'the process stream from the sandbox agent broke' });
      }
      const { restored } = await deps.untilRunning(sandboxId, pause.startedAt);
      if (closed) return;
      if (!restored) {
        return fail({
          code: 'SANDBOX_NOT_RUNNING',
          message: `process ${pid} ended: the sandbox was paused without its memory, stopped or deleted`,
        });
      }
      try {
        handle = await deps.reconnect(sandboxId, pid, outputFrames);
      } catch (err) {
        return fail(
          err instanceof DenError
            ? err.toJSON()
            : { code: 'INTERNAL', message: `reattaching to process ${pid} failed: ${(err as Error).message}` },
        );
      }
      current = handle;
      if (closed) return handle.close();
    }
  })();

  return { stream: out, close };
}
