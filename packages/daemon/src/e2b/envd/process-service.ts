import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { ProcessHandle } from '@den/agent/client';
import {
  DenError,
  type ProcessInfo as DenProcessInfo,
  decodeJson,
  type ExitInfo,
  FrameType,
  type ProcessSpec,
} from '@den/shared';
import type { AgentConnection } from '../../services/ports.js';
import { rpc, toConnectError } from './errors.js';
import { EventQueue, KeepaliveTicker } from './event-queue.js';
import {
  type ProcessEventSchema,
  type ProcessInfoSchema,
  type ProcessSelector,
  type Process as ProcessService,
  Signal,
  type StartRequest,
} from './gen/process/process_pb.js';
import type { PathResolver } from './paths.js';
import { type EnvdTarget, targetKey } from './sandbox-context.js';

type ProcessEventInit = MessageInitShape<typeof ProcessEventSchema>;

/** Names Go's os.ProcessState.String() gives the signals a process usually dies of ("signal: killed"). */
const GO_SIGNAL_NAMES: Record<string, string> = {
  SIGKILL: 'killed',
  SIGTERM: 'terminated',
  SIGINT: 'interrupt',
  SIGHUP: 'hangup',
  SIGQUIT: 'quit',
  SIGABRT: 'aborted',
  SIGSEGV: 'segmentation fault',
  SIGPIPE: 'broken pipe',
};

/** den's exit information as envd's EndEvent: `exit status N`, or exit code -1 and `signal: killed`. */
export function toEndEvent(exit: ExitInfo): ProcessEventInit {
  if (exit.exitCode !== null) {
    const status = `exit status ${exit.exitCode}`;
    return {
      event: {
        case: 'end',
        value: { exitCode: exit.exitCode, exited: true, status, ...(exit.exitCode !== 0 && { error: status }) },
      },
    };
  }
  const name = exit.signal ?? 'SIGKILL';
  const status = `signal: ${GO_SIGNAL_NAMES[name] ?? name.replace(/^SIG/, '').toLowerCase()}`;
  return { event: { case: 'end', value: { exitCode: -1, exited: false, status, error: status } } };
}

/** envd's Start request as den's ProcessSpec. */
export function toProcessSpec(
  req: StartRequest,
  target: Pick<EnvdTarget, 'user'>,
  options: { cwd?: string; timeoutMs?: number },
): ProcessSpec {
  const config = req.process;
  if (!config || config.cmd === '') {
    throw new DenError('INVALID_ARGUMENT', 'process.cmd is required: the program to run, e.g. /bin/bash');
  }
  const spec: ProcessSpec = {
    cmd: [config.cmd, ...config.args],
    env: { ...config.envs },
    // Every envd process outlives the stream that started it: the SDK's background commands and PTYs detach
    // (disconnect) and reconnect, and only the Connect-Timeout-Ms deadline ends a process nobody kills.
    background: true,
  };
  if (options.cwd !== undefined) spec.cwd = options.cwd;
  if (target.user !== undefined) spec.user = target.user;
  if (req.tag !== undefined) spec.tag = req.tag;
  if (options.timeoutMs !== undefined && options.timeoutMs > 0) spec.timeoutMs = options.timeoutMs;
  if (req.pty) {
    const size = req.pty.size;
    if (!size || size.cols < 1 || size.rows < 1) {
      throw new DenError('INVALID_ARGUMENT', 'pty.size needs cols and rows of at least 1');
    }
    spec.pty = { cols: size.cols, rows: size.rows };
  }
  return spec;
}

/**
 * Relays one agent process stream as envd process events: start, data (stdout/stderr, or pty for a terminal),
 * keepalives while idle, end. Ends when the process ends, the client goes away (the process keeps running), or
 * the deadline passes.
 */
async function* relay(
  handle: ProcessHandle,
  options: { pty: boolean; closeStdin: boolean; ctx: HandlerContext },
): AsyncGenerator<{ event: ProcessEventInit }> {
  const { ctx } = options;
  const queue = new EventQueue<ProcessEventInit>();
  const keepalive = new KeepaliveTicker(queue, ctx.requestHeader.get('keepalive-ping-interval'), () => ({
    event: { case: 'keepalive' as const, value: {} },
  }));
  const stop = (): void => queue.end();
  ctx.signal.addEventListener('abort', stop, { once: true });

  void (async () => {
    try {
      for await (const frame of handle.frames()) {
        switch (frame.type) {
          case FrameType.STARTED:
            queue.push({ event: { case: 'start', value: { pid: decodeJson<{ pid: number }>(frame).pid } } });
            if (options.closeStdin) handle.closeStdin();
            break;
          case FrameType.STDOUT:
            queue.push({
              event: {
                case: 'data',
                value: { output: { case: options.pty ? 'pty' : 'stdout', value: frame.payload } },
              },
            });
            break;
          case FrameType.STDERR:
            queue.push({ event: { case: 'data', value: { output: { case: 'stderr', value: frame.payload } } } });
            break;
          case FrameType.EXIT: {
            const exit = decodeJson<ExitInfo>(frame);
            if (exit.timedOut) {
              queue.end(
                new ConnectError(
                  'the process ran past its timeoutMs and was killed; pass a larger timeoutMs (0 = no limit)',
                  Code.DeadlineExceeded,
                ),
              );
              return;
            }
            queue.push(toEndEvent(exit));
            break;
          }
          case FrameType.ERROR:
            throw DenError.fromBody(decodeJson<unknown>(frame), 'the sandbox agent reported an unreadable error');
        }
      }
      queue.end();
    } catch (err) {
      queue.end(toConnectError(err));
    }
  })();

  try {
    for await (const event of queue) {
      keepalive.sent();
      yield { event };
    }
  } finally {
    keepalive.stop();
    ctx.signal.removeEventListener('abort', stop);
    // Detaches only: the agent keeps a background process running and buffers its output for a later Connect.
    handle.close();
  }
}

function targetOf(ctx: HandlerContext): Promise<EnvdTarget> {
  const target = ctx.values.get(targetKey);
  if (!target) throw new ConnectError('no sandbox selected: send the E2b-Sandbox-Id header', Code.InvalidArgument);
  return target;
}

async function findProcess(agent: AgentConnection, selector: ProcessSelector | undefined): Promise<DenProcessInfo> {
  const sel = selector?.selector;
  if (!sel || sel.case === undefined) {
    throw new DenError('INVALID_ARGUMENT', 'process selector is required: give the pid or the tag of the process');
  }
  const processes = await agent.listProcesses();
  const found =
    sel.case === 'pid'
      ? processes.find((p) => p.pid === sel.value)
      : processes.find((p) => p.tag === sel.value && !p.exit);
  if (!found) {
    throw new DenError(
      'PROCESS_NOT_FOUND',
      sel.case === 'pid' ? `process with pid ${sel.value} not found` : `process with tag ${sel.value} not found`,
    );
  }
  return found;
}

/** An ended process cannot take input or signals; envd reports it as not found. */
function running(info: DenProcessInfo): DenProcessInfo {
  if (info.exit) throw new DenError('PROCESS_NOT_FOUND', `process with pid ${info.pid} not found (it has exited)`);
  return info;
}

/** `process.Process` on top of den's agent. */
export function processService(paths: PathResolver): ServiceImpl<typeof ProcessService> {
  return {
    async *start(req, ctx) {
      const target = await rpc(() => targetOf(ctx));
      const handle = await rpc(async () => {
        const cwd = req.process?.cwd ? await paths.resolve(target, req.process.cwd, 'cwd') : undefined;
        return target.agent.openProcess(toProcessSpec(req, target, { cwd, timeoutMs: ctx.timeoutMs() }));
      });
      // envd closes stdin unless asked to keep it (absent = keep, for older SDKs); a terminal's input stays open.
      const closeStdin = !req.pty && req.stdin === false;
      yield* relay(handle, { pty: req.pty !== undefined, closeStdin, ctx });
    },

    async *connect(req, ctx) {
      const target = await rpc(() => targetOf(ctx));
      const { handle, pty } = await rpc(async () => {
        const info = await findProcess(target.agent, req.process);
        // envd's Connect sends output from now on (ConnectRequest.replay, which the JS SDK never sets, is false).
        return { handle: await target.agent.connectProcess(info.pid, { replay: false }), pty: info.pty };
      });
      yield* relay(handle, { pty, closeStdin: false, ctx });
    },

    async list(_req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const processes = (await target.agent.listProcesses()).filter((p) => !p.exit);
        return {
          processes: processes.map(
            (p): MessageInitShape<typeof ProcessInfoSchema> => ({
              pid: p.pid,
              ...(p.tag !== undefined && { tag: p.tag }),
              config: { cmd: p.cmd[0] ?? '', args: p.cmd.slice(1), envs: {}, cwd: p.cwd },
            }),
          ),
        };
      });
    },

    async sendInput(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const info = running(await findProcess(target.agent, req.process));
        const input = req.input?.input;
        if (input?.case === 'stdin' || input?.case === 'pty') await target.agent.sendStdin(info.pid, input.value);
        return {};
      });
    },

    async streamInput(requests, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        let pid: number | undefined;
        for await (const req of requests) {
          const event = req.event;
          if (event.case === 'start') {
            pid = running(await findProcess(target.agent, event.value.process)).pid;
          } else if (event.case === 'data') {
            if (pid === undefined) {
              throw new DenError(
                'INVALID_ARGUMENT',
                'the input stream must start with a start event naming the process',
              );
            }
            const input = event.value.input?.input;
            if (input?.case === 'stdin' || input?.case === 'pty') await target.agent.sendStdin(pid, input.value);
          }
        }
        return {};
      });
    },

    async sendSignal(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const signal =
          req.signal === Signal.SIGKILL ? 'SIGKILL' : req.signal === Signal.SIGTERM ? 'SIGTERM' : undefined;
        if (!signal) throw new DenError('INVALID_ARGUMENT', 'signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL');
        const info = running(await findProcess(target.agent, req.process));
        await target.agent.signal(info.pid, signal);
        return {};
      });
    },

    async closeStdin(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const info = running(await findProcess(target.agent, req.process));
        if (info.pty) {
          throw new DenError('INVALID_ARGUMENT', `process ${info.pid} runs in a terminal: send Ctrl-D (0x04) as input`);
        }
        await target.agent.closeStdin(info.pid);
        return {};
      });
    },

    async update(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const info = running(await findProcess(target.agent, req.process));
        const size = req.pty?.size;
        if (size) {
          if (size.cols < 1 || size.rows < 1)
            throw new DenError('INVALID_ARGUMENT', 'pty.size needs cols and rows >= 1');
          await target.agent.resize(info.pid, { cols: size.cols, rows: size.rows });
        }
        return {};
      });
    },
  };
}
