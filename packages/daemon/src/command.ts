import { DenError } from '@den/shared';
import { runTool, type ToolExit } from './tool-spawn.js';

/**
 * Runs a system tool (mount, losetup, mkfs.ext4, ip, nft) with an argv array, never a shell, and returns its stdout.
 * `input` is written to its stdin (`ip -batch -`, `nft -f -`). A failure becomes
 * `DenError('INTERNAL', '<tool> failed: <stderr>')`: these tools fail only when the host is misconfigured or a
 * resource is busy, which the message names.
 */
export async function command(
  binary: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string } | number = {},
): Promise<string> {
  const { timeoutMs = 30_000, input } = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  const fail = (text: string) => {
    const shown = args.join(' ').slice(0, 200);
    return new DenError('INTERNAL', `${binary} ${shown} failed: ${text.trim()}`);
  };
  let exit: ToolExit;
  try {
    exit = await runTool(binary, args, { timeoutMs, ...(input !== undefined ? { input } : {}) });
  } catch (err) {
    throw fail((err as Error).message);
  }
  if (exit.code === 0) return exit.stdout;
  const { stdout, stderr, signal, code } = exit;
  throw fail(stderr || stdout || (signal ? `killed by ${signal} (timeout ${timeoutMs} ms)` : `exit code ${code}`));
}

export interface CommandStep {
  argv: string[];
  input?: string;
  /** a failure of this step is ignored (for deletes of things that may already be gone) */
  optional?: boolean;
}

/** Arguments den passes to system tools in a script: names, addresses, paths; nothing a shell would expand. */
const PLAIN_ARG = /^[A-Za-z0-9_./:=,+@%-]+$/;
const HEREDOC_END = 'DEN_STEP_INPUT_END';

/**
 * Runs several tool invocations in one `sh -e` (each step's input as a quoted here-document), stopping at the first
 * failure: one start from the daemon (tool-spawn.ts) instead of one per tool, sh starting the rest; sandbox network
 * setup runs two `ip` calls per create this way.
 */
export function commandSteps(steps: CommandStep[], timeoutMs = 30_000): Promise<string> {
  const lines = ['set -e'];
  for (const step of steps) {
    for (const arg of step.argv) {
      if (!PLAIN_ARG.test(arg))
        throw new DenError('INTERNAL', `unsafe argument for a command step: ${JSON.stringify(arg)}`);
    }
    if (step.input === undefined) {
      lines.push(step.optional ? `${step.argv.join(' ')} 2>/dev/null || true` : step.argv.join(' '));
      continue;
    }
    if (step.input.split('\n').includes(HEREDOC_END))
      throw new DenError('INTERNAL', 'command step input holds the here-document end');
    lines.push(`${step.argv.join(' ')} <<'${HEREDOC_END}'`, step.input.replace(/\n$/, ''), HEREDOC_END);
  }
  return command('sh', ['-c', lines.join('\n')], { timeoutMs });
}
