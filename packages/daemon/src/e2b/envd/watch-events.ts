import type { WatchEvent } from '@den/agent/client';

/**
 * The temporary file den's agent writes a file through: `.<name>.den-<pid>-<n>.tmp` beside it, renamed onto
 * `<name>` when complete (packages/agent/src/files.ts, `write`), so readers never see half a file.
 */
const AGENT_WRITE_TEMP = /^\.(.+)\.den-\d+-\d+\.tmp$/;

/**
 * Turns the events of one agent watch into what envd reports for the same changes. envd writes a file in place
 * (open with O_CREAT|O_TRUNC, then write), so a watcher sees `create` and `write` of the file itself, and E2B's
 * documented pattern waits for `write` after `files.write`. den's agent writes a temporary file and renames it
 * into place, which a watch sees as create/rename of the temporary name and `create` of the file: the temporary
 * name is hidden, and the `create` it turns into is reported as `create` + `write`. One instance per watch: the
 * rename of the temporary file and the `create` of its target arrive one after the other in the same stream.
 */
export class WatchEventTranslator {
  /** names (relative to the watched root) whose temporary file was just renamed away */
  private readonly renamedOnto = new Set<string>();

  translate(event: WatchEvent): WatchEvent[] {
    const slash = event.name.lastIndexOf('/');
    const temp = AGENT_WRITE_TEMP.exec(event.name.slice(slash + 1));
    if (temp) {
      if (event.type === 'rename') this.renamedOnto.add(event.name.slice(0, slash + 1) + temp[1]);
      return [];
    }
    if (event.type === 'create' && this.renamedOnto.delete(event.name)) {
      return [event, { type: 'write', name: event.name }];
    }
    return [event];
  }
}
