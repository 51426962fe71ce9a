import type { Sandbox } from '@den/sdk';

/**
 * A shell command that starts, detached, a process counting in memory and writing the count to /tmp/count every
 * 100 ms: the count shows whether a process's memory survived (pause/resume, a fork from a snapshot).
 */
export const COUNTER = `nohup python3 -c "
import time
i = 0
while True:
    i += 1
    open('/tmp/count', 'w').write(str(i))
    time.sleep(0.1)
" >/dev/null 2>&1 &`;

/** The counter's last written value in the sandbox. */
export async function count(sbx: Sandbox): Promise<number> {
  return Number((await sbx.commands.run('cat /tmp/count')).stdout);
}
