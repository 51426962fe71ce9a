import assert from 'node:assert/strict';
import { appendFile, chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DenError } from '@den/shared';
import type { WatchEvent, WatchHandle } from '../src/client.js';
import { type AgentFixture, startAgent } from './agent-fixture.js';

/** Collects a watch's events in the background; `until` waits for one matching event. */
function collect(handle: WatchHandle): {
  events: WatchEvent[];
  until(pred: (e: WatchEvent) => boolean): Promise<void>;
} {
  const events: WatchEvent[] = [];
  const waiters: { pred: (e: WatchEvent) => boolean; resolve: () => void }[] = [];
  void (async () => {
    for await (const e of handle.events()) {
      events.push(e);
      for (const w of waiters.splice(0)) {
        if (w.pred(e)) w.resolve();
        else waiters.push(w);
      }
    }
  })();
  return {
    events,
    until(pred) {
      if (events.some(pred)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such event; got ${JSON.stringify(events)}`)), 3000);
        waiters.push({
          pred,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

describe('agent: directory watch', () => {
  let agent: AgentFixture;
  let root: string;

  before(async () => {
    agent = await startAgent();
    root = join(agent.dir, 'watched');
    await mkdir(root);
  });
  after(async () => {
    await agent.stop();
  });

  it('reports create, write, chmod, rename and remove with names relative to the directory', async () => {
    const handle = await agent.client.watch(root);
    const seen = collect(handle);
    try {
      await writeFile(join(root, 'a.txt'), 'one');
      await seen.until((e) => e.type === 'create' && e.name === 'a.txt');
      await appendFile(join(root, 'a.txt'), 'two');
      await seen.until((e) => e.type === 'write' && e.name === 'a.txt');
      await chmod(join(root, 'a.txt'), 0o600);
      await seen.until((e) => e.type === 'chmod' && e.name === 'a.txt');
      await rename(join(root, 'a.txt'), join(root, 'b.txt'));
      await seen.until((e) => e.type === 'create' && e.name === 'b.txt');
      await seen.until((e) => e.type === 'rename' && e.name === 'a.txt');
      await rm(join(root, 'b.txt'));
      await seen.until((e) => e.type === 'remove' && e.name === 'b.txt');
      assert.ok(!seen.events.some((e) => e.type === 'remove' && e.name === 'a.txt'), 'a move is not a remove');
    } finally {
      handle.close();
    }
  });

  it('follows new subdirectories when recursive, and ignores them otherwise', async () => {
    const dir = join(root, 'rec');
    await mkdir(dir);
    const flat = await agent.client.watch(dir);
    const deep = await agent.client.watch(dir, { recursive: true });
    const flatSeen = collect(flat);
    const deepSeen = collect(deep);
    try {
      await mkdir(join(dir, 'sub'));
      await deepSeen.until((e) => e.type === 'create' && e.name === 'sub');
      // The new directory's watch is added asynchronously after its create event.
      await new Promise((r) => setTimeout(r, 100));
      await writeFile(join(dir, 'sub/x.txt'), 'x');
      await deepSeen.until((e) => e.type === 'create' && e.name === 'sub/x.txt');
      await flatSeen.until((e) => e.type === 'create' && e.name === 'sub');
      assert.ok(!flatSeen.events.some((e) => e.name.startsWith('sub/')), JSON.stringify(flatSeen.events));
    } finally {
      flat.close();
      deep.close();
    }
  });

  it('answers FILE_NOT_FOUND for a missing directory and NOT_A_DIRECTORY for a file', async () => {
    await assert.rejects(agent.client.watch(join(root, 'missing')), (err: DenError) => err.code === 'FILE_NOT_FOUND');
    await writeFile(join(root, 'f'), '');
    await assert.rejects(agent.client.watch(join(root, 'f')), (err: DenError) => err.code === 'NOT_A_DIRECTORY');
  });

  it('ends the stream with an error when the watched directory is removed', async () => {
    const dir = join(root, 'doomed');
    await mkdir(dir);
    const handle = await agent.client.watch(dir);
    const done = (async () => {
      for await (const _ of handle.events()) {
        // drain
      }
    })();
    const ended = assert.rejects(done, (err: DenError) => err.code === 'FILE_NOT_FOUND');
    await rm(dir, { recursive: true });
    await ended;
  });
});
