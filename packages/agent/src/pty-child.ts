import type { IPty } from 'node-pty';
import type { ChildEvents, ChildHandle } from './child.js';
import { DenError, FrameType, type PtySize } from './contract.js';
import type { LaunchPlan } from './launch.js';
import { signalName } from './signals.js';

type NodePty = typeof import('node-pty');
let nodePty: Promise<NodePty> | undefined;

/** node-pty is loaded on the first PTY request: most sandboxes never open one, and it costs startup and memory. */
function loadNodePty(): Promise<NodePty> {
  nodePty ??= import('node-pty').then((m) => ((m as { default?: NodePty }).default ?? m) as NodePty);
  return nodePty;
}

/**
 * Starts a child on a new pseudo-terminal. node-pty's forkpty makes the child a session and process group leader
 * with the terminal as its controlling tty; it sets gid and uid but no supplementary groups, so the agent drops
 * its own at startup (main.ts) for the child to inherit none.
 */
export async function spawnPty(plan: LaunchPlan, size: PtySize, events: ChildEvents): Promise<ChildHandle> {
  const { spawn } = await loadNodePty();
  let pty: IPty;
  try {
    pty = spawn(plan.file, plan.argv.slice(1), {
      name: plan.env.TERM ?? 'xterm-256color',
      cols: size.cols,
      rows: size.rows,
      cwd: plan.cwd,
      env: plan.env,
      uid: plan.user.uid,
      gid: plan.user.gid,
      // Raw bytes: output is relayed as frames, never decoded here.
      encoding: null,
    });
  } catch (err) {
    throw new DenError('INTERNAL', `opening a terminal for ${plan.argv[0]} failed: ${(err as Error).message}`);
  }
  return new PtyChild(pty, events);
}

class PtyChild implements ChildHandle {
  readonly pid: number;

  constructor(
    private readonly pty: IPty,
    events: ChildEvents,
  ) {
    this.pid = pty.pid;
    // With `encoding: null` node-pty hands over Buffers, though its typings say string.
    pty.onData((data) => events.output(FrameType.STDOUT, data as unknown as Buffer));
    pty.onExit(({ exitCode, signal }) => {
      if (signal) events.exit(null, signalName(signal));
      else events.exit(exitCode, null);
    });
  }

  writeStdin(data: Uint8Array): boolean {
    this.pty.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return true;
  }

  /** A terminal has no end of input; ^D is what a user would type to end it at the start of a line. */
  endStdin(): void {
    this.pty.write('\x04');
  }

  resize(size: PtySize): void {
    try {
      this.pty.resize(size.cols, size.rows);
    } catch {
      // The terminal closed already.
    }
  }

  pause(): void {
    this.pty.pause();
  }

  resume(): void {
    this.pty.resume();
  }
}
