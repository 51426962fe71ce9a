import { randomUUID } from 'node:crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { WatchEvent, WatchHandle } from '@den/agent/client';
import { DenError } from '@den/shared';
import { toEntryInfo } from './entry.js';
import { rpc, toConnectError } from './errors.js';
import { EventQueue, KeepaliveTicker } from './event-queue.js';
import {
  EventType,
  type FilesystemEventSchema,
  type Filesystem as FilesystemService,
  type WatchDirResponseSchema,
} from './gen/filesystem/filesystem_pb.js';
import type { PathResolver } from './paths.js';
import { type EnvdTarget, targetKey } from './sandbox-context.js';
import { WatchEventTranslator } from './watch-events.js';

type FilesystemEventInit = MessageInitShape<typeof FilesystemEventSchema>;
type WatchDirResponseInit = MessageInitShape<typeof WatchDirResponseSchema>;

const EVENT_TYPE: Record<WatchEvent['type'], EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
};

/** Events a polled watcher keeps between two GetWatcherEvents calls; older ones are dropped first. */
const MAX_PENDING_WATCHER_EVENTS = 10_000;
/** Polled watchers alive at once across all sandboxes: each holds an agent stream and inotify watches. */
const MAX_WATCHERS = 1000;

interface PolledWatcher {
  sandboxId: string;
  handle: WatchHandle;
  events: FilesystemEventInit[];
  /** set when the watch broke; reported by the next GetWatcherEvents */
  error: ConnectError | undefined;
}

function targetOf(ctx: HandlerContext): Promise<EnvdTarget> {
  const target = ctx.values.get(targetKey);
  if (!target) throw new ConnectError('no sandbox selected: send the E2b-Sandbox-Id header', Code.InvalidArgument);
  return target;
}

/** An agent watch event as envd's FilesystemEvent, with the entry's info when asked for and it still exists. */
async function toFilesystemEvent(
  event: WatchEvent,
  root: string,
  target: EnvdTarget,
  includeEntry: boolean,
): Promise<FilesystemEventInit> {
  const out: FilesystemEventInit = { name: event.name, type: EVENT_TYPE[event.type] };
  // A remove or rename names a path whose entry is gone; whatever is there now is another entry.
  if (includeEntry && (event.type === 'create' || event.type === 'write' || event.type === 'chmod')) {
    const path = root === '/' ? `/${event.name}` : `${root}/${event.name}`;
    const entry = await target.agent.stat(path).catch(() => undefined);
    if (entry) out.entry = toEntryInfo(entry);
  }
  return out;
}

/** `filesystem.Filesystem` on top of den's agent. */
export function filesystemService(paths: PathResolver): ServiceImpl<typeof FilesystemService> & {
  /** closes every polled watcher (daemon shutdown) */
  closeWatchers(): void;
} {
  const watchers = new Map<string, PolledWatcher>();

  return {
    async stat(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        return { entry: toEntryInfo(await target.agent.stat(await paths.resolve(target, req.path))) };
      });
    },

    async makeDir(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const path = await paths.resolve(target, req.path);
        const existing = await target.agent.stat(path).catch((err: unknown) => {
          if (err instanceof DenError && err.code === 'FILE_NOT_FOUND') return undefined;
          throw err;
        });
        if (existing?.type === 'dir') throw new ConnectError(`directory already exists: ${path}`, Code.AlreadyExists);
        if (existing) throw new DenError('INVALID_ARGUMENT', `path already exists but it is not a directory: ${path}`);
        const entry = await target.agent.makeDir(path, target.user !== undefined ? { user: target.user } : {});
        return { entry: toEntryInfo(entry) };
      });
    },

    async move(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const from = await paths.resolve(target, req.source, 'source');
        const to = await paths.resolve(target, req.destination, 'destination');
        const entry = await target.agent.move(from, to, target.user !== undefined ? { user: target.user } : {});
        return { entry: toEntryInfo(entry) };
      });
    },

    async listDir(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const entries = await target.agent.list(await paths.resolve(target, req.path), req.depth || 1);
        return { entries: entries.map(toEntryInfo) };
      });
    },

    async remove(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        await target.agent.remove(await paths.resolve(target, req.path));
        return {};
      });
    },

    async *watchDir(req, ctx) {
      const target = await rpc(() => targetOf(ctx));
      const root = await rpc(() => paths.resolve(target, req.path));
      const handle = await rpc(() => target.agent.watch(root, { recursive: req.recursive }));
      const queue = new EventQueue<WatchDirResponseInit>();
      const keepalive = new KeepaliveTicker(queue, ctx.requestHeader.get('keepalive-ping-interval'), () => ({
        event: { case: 'keepalive' as const, value: {} },
      }));
      const stop = (): void => queue.end();
      ctx.signal.addEventListener('abort', stop, { once: true });
      queue.push({ event: { case: 'start', value: {} } });
      void (async () => {
        try {
          const translator = new WatchEventTranslator();
          for await (const agentEvent of handle.events()) {
            for (const event of translator.translate(agentEvent)) {
              queue.push({
                event: { case: 'filesystem', value: await toFilesystemEvent(event, root, target, req.includeEntry) },
              });
            }
          }
          queue.end();
        } catch (err) {
          queue.end(toConnectError(err));
        }
      })();
      try {
        for await (const response of queue) {
          keepalive.sent();
          yield response;
        }
      } finally {
        keepalive.stop();
        ctx.signal.removeEventListener('abort', stop);
        handle.close();
      }
    },

    async createWatcher(req, ctx) {
      return rpc(async () => {
        if (watchers.size >= MAX_WATCHERS) {
          throw new DenError('RESOURCE_EXHAUSTED', `${MAX_WATCHERS} watchers are open; remove some with RemoveWatcher`);
        }
        const target = await targetOf(ctx);
        const root = await paths.resolve(target, req.path);
        const handle = await target.agent.watch(root, { recursive: req.recursive });
        const id = randomUUID();
        const watcher: PolledWatcher = { sandboxId: target.sandbox.id, handle, events: [], error: undefined };
        watchers.set(id, watcher);
        void (async () => {
          try {
            const translator = new WatchEventTranslator();
            for await (const agentEvent of handle.events()) {
              for (const event of translator.translate(agentEvent)) {
                watcher.events.push(await toFilesystemEvent(event, root, target, req.includeEntry));
                if (watcher.events.length > MAX_PENDING_WATCHER_EVENTS) watcher.events.shift();
              }
            }
          } catch (err) {
            watcher.error = toConnectError(err);
          }
        })();
        return { watcherId: id };
      });
    },

    async getWatcherEvents(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        const watcher = watcherOf(req.watcherId, target);
        const events = watcher.events.splice(0);
        if (events.length === 0 && watcher.error) {
          watchers.delete(req.watcherId);
          throw watcher.error;
        }
        return { events };
      });
    },

    async removeWatcher(req, ctx) {
      return rpc(async () => {
        const target = await targetOf(ctx);
        watcherOf(req.watcherId, target).handle.close();
        watchers.delete(req.watcherId);
        return {};
      });
    },

    closeWatchers() {
      for (const watcher of watchers.values()) watcher.handle.close();
      watchers.clear();
    },
  };

  function watcherOf(id: string, target: EnvdTarget): PolledWatcher {
    const watcher = watchers.get(id);
    // Another sandbox's watcher id is answered like an unknown one.
    if (!watcher || watcher.sandboxId !== target.sandbox.id) {
      throw new ConnectError(`watcher with id ${id} not found; create one with CreateWatcher`, Code.NotFound);
    }
    return watcher;
  }
}
