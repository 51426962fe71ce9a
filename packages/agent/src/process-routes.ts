import type { ServerHttp2Stream } from 'node:http2';
import { DenError, decodeJson, encodeJsonFrame, type Frame, FrameDecoder, FrameType } from './contract.js';
import { endAndClose, errorBody, readJsonBody, sendJson, sendNoContent } from './http.js';
import { checkPtySize, type LaunchContext, planLaunch } from './launch.js';
import { ManagedProcess } from './managed-process.js';
import type { ProcessRegistry } from './process-registry.js';
import { FRAMES_CONTENT_TYPE } from './protocol.js';
import { parseSignal } from './signals.js';
import type { Spawner } from './spawner.js';

/** HTTP/2 handlers of the process endpoints. Parsing and protocol only; processes live in ManagedProcess. */
export interface ProcessRouteDeps extends LaunchContext {
  registry: ProcessRegistry;
  /** starts pipe processes when there is one (spawner.ts) */
  spawner?: Spawner;
}

/**
 * `POST /process`: the request body is SPEC then input frames, the response is STARTED, output and EXIT (or
 * ERROR when it cannot start). Ending the request body closes the stdin of a foreground pipe process (no more
 * STDIN frames can arrive); resetting the stream kills a foreground process's group.
 */
export function openProcess(stream: ServerHttp2Stream, deps: ProcessRouteDeps): void {
  // Headers go out with the first frame (STARTED or ERROR), so the client wakes up once for both.
  const respond = (): void => {
    if (!stream.headersSent && !stream.destroyed)
      stream.respond({ ':status': 200, 'content-type': FRAMES_CONTENT_TYPE });
  };
  let state: 'spec' | 'starting' | 'running' | 'failed' = 'spec';
  let proc: ManagedProcess | undefined;
  const queued: Frame[] = [];
  let inputEnded = false;

  const fail = (err: unknown): void => {
    state = 'failed';
    respond();
    endAndClose(stream, encodeJsonFrame(FrameType.ERROR, errorBody(err)));
  };
  const closeInput = (p: ManagedProcess): void => {
    if (!p.background && !p.plan.pty) p.endStdin();
  };
  const start = async (frame: Frame): Promise<void> => {
    const plan = planLaunch(parseJsonFrame(frame, 'SPEC'), deps);
    const p = new ManagedProcess(plan, deps.registry.ended, deps.spawner);
    await p.start();
    proc = p;
    state = 'running';
    deps.registry.add(p);
    if (stream.destroyed || stream.closed) {
      p.abandon();
      return;
    }
    respond();
    stream.write(encodeJsonFrame(FrameType.STARTED, { pid: p.pid }));
    p.attach(stream, undefined);
    stream.once('close', () => p.abandon());
    for (const f of queued.splice(0)) applyControl(p, f, stream);
    if (inputEnded) closeInput(p);
  };

  readFrames(
    stream,
    (frame) => {
      if (state === 'spec') {
        if (frame.type !== FrameType.SPEC) {
          fail(
            new DenError(
              'INVALID_ARGUMENT',
              `the first frame must be SPEC (type ${FrameType.SPEC}), not ${frame.type}`,
            ),
          );
          return;
        }
        state = 'starting';
        start(frame).catch(fail);
      } else if (state === 'starting') {
        queued.push(frame);
      } else if (state === 'running' && proc) {
        applyControl(proc, frame, stream);
      }
    },
    () => {
      inputEnded = true;
      if (state === 'spec') fail(new DenError('INVALID_ARGUMENT', 'the request ended before its SPEC frame'));
      else if (state === 'running' && proc) closeInput(proc);
    },
    fail,
  );
}

/**
 * `POST /processes/:pid/connect`: STARTED, the buffered output of a background process (unless `replay` is false,
 * `?replay=false`: only output from now on, as E2B's envd Connect sends; `?from=N`: from output frame N on, for a
 * client that received N output frames before its connection broke, e.g. across a pause), live output, EXIT.
 */
export function connectProcess(
  stream: ServerHttp2Stream,
  pid: number,
  deps: ProcessRouteDeps,
  replayFrom: number | undefined,
): void {
  const proc = deps.registry.get(pid);
  if (!proc) throw processNotFound(pid);
  stream.respond({ ':status': 200, 'content-type': FRAMES_CONTENT_TYPE });
  stream.write(encodeJsonFrame(FrameType.STARTED, { pid }));
  proc.attach(stream, replayFrom);
  readFrames(
    stream,
    (frame) => applyControl(proc, frame, stream),
    () => {},
    (err) => endAndClose(stream, encodeJsonFrame(FrameType.ERROR, errorBody(err))),
  );
}

export function listProcesses(stream: ServerHttp2Stream, deps: ProcessRouteDeps): void {
  sendJson(stream, 200, deps.registry.list());
}

export async function signalProcess(stream: ServerHttp2Stream, pid: number, deps: ProcessRouteDeps): Promise<void> {
  const body = await readJsonBody(stream);
  const signal = parseSignal(body.signal);
  if (!running(pid, deps).signal(signal)) throw processNotFound(pid);
  sendNoContent(stream);
}

/** `POST /processes/:pid/stdin`: the raw body goes to the process's stdin, with backpressure. */
export function writeStdin(stream: ServerHttp2Stream, pid: number, deps: ProcessRouteDeps): void {
  const proc = running(pid, deps);
  stream.on('data', (chunk: Buffer) => {
    if (!proc.writeStdin(chunk, () => stream.resume())) stream.pause();
  });
  stream.once('end', () => sendNoContent(stream));
}

export function closeStdin(stream: ServerHttp2Stream, pid: number, deps: ProcessRouteDeps): void {
  running(pid, deps).endStdin();
  sendNoContent(stream);
}

export async function resizeProcess(stream: ServerHttp2Stream, pid: number, deps: ProcessRouteDeps): Promise<void> {
  const size = checkPtySize(await readJsonBody(stream), 'the body');
  const proc = running(pid, deps);
  if (!proc.plan.pty) {
    throw new DenError(
      'INVALID_ARGUMENT',
      `process ${pid} runs without a terminal; only processes started with pty can be resized`,
    );
  }
  proc.resize(size);
  sendNoContent(stream);
}

function running(pid: number, deps: ProcessRouteDeps): ManagedProcess {
  const proc = deps.registry.get(pid);
  if (!proc) throw processNotFound(pid);
  if (proc.exit) {
    throw new DenError(
      'PROCESS_NOT_FOUND',
      `process ${pid} has already exited (exit code ${proc.exit.exitCode ?? proc.exit.signal})`,
    );
  }
  return proc;
}

function processNotFound(pid: number): DenError {
  return new DenError('PROCESS_NOT_FOUND', `no process with pid ${pid} in this sandbox; list them with GET /processes`);
}

/** Input frames from a client to a running process. Malformed control frames are logged and skipped. */
function applyControl(proc: ManagedProcess, frame: Frame, stream: ServerHttp2Stream): void {
  try {
    switch (frame.type) {
      case FrameType.STDIN:
        if (!proc.writeStdin(frame.payload, () => stream.resume())) stream.pause();
        break;
      case FrameType.STDIN_EOF:
        proc.endStdin();
        break;
      case FrameType.RESIZE:
        proc.resize(checkPtySize(parseJsonFrame(frame, 'RESIZE'), 'the RESIZE frame'));
        break;
      case FrameType.SIGNAL:
        proc.signal(parseSignal((parseJsonFrame(frame, 'SIGNAL') as { signal?: unknown }).signal));
        break;
      default:
        console.error(`den-agent: process ${proc.pid}: ignoring a frame of type ${frame.type}`);
    }
  } catch (err) {
    console.error(`den-agent: process ${proc.pid}: ignoring a bad control frame: ${(err as Error).message}`);
  }
}

function parseJsonFrame(frame: Frame, name: string): unknown {
  try {
    return decodeJson<unknown>(frame);
  } catch {
    throw new DenError('INVALID_ARGUMENT', `the ${name} frame is not valid JSON`);
  }
}

/** Decodes the frames of a request body as they arrive. */
function readFrames(
  stream: ServerHttp2Stream,
  onFrame: (frame: Frame) => void,
  onEnd: () => void,
  onError: (err: DenError) => void,
): void {
  const decoder = new FrameDecoder();
  let broken = false;
  stream.on('data', (chunk: Buffer) => {
    if (broken) return;
    let frames: Frame[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      broken = true;
      onError(
        new DenError('INVALID_ARGUMENT', `the request body is not a valid frame stream: ${(err as Error).message}`),
      );
      return;
    }
    for (const frame of frames) onFrame(frame);
  });
  stream.once('end', () => {
    if (broken) return;
    if (decoder.hasPartial) onError(new DenError('INVALID_ARGUMENT', 'the request body ended inside a frame'));
    else onEnd();
  });
}
