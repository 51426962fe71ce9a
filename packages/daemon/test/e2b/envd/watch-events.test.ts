import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { WatchEvent } from '@den/agent/client';
import { WatchEventTranslator } from '../../../src/e2b/envd/watch-events.js';

/** What the agent's watch reports for a file written through the agent: temp file created, renamed onto the file. */
function agentWrite(name: string, n: number): WatchEvent[] {
  const slash = name.lastIndexOf('/');
  const temp = `${name.slice(0, slash + 1)}.${name.slice(slash + 1)}.den-2-${n}.tmp`;
  return [
    { type: 'create', name: temp },
    { type: 'write', name: temp },
    { type: 'rename', name: temp },
    { type: 'create', name },
  ];
}

function translateAll(events: WatchEvent[]): string[] {
  const translator = new WatchEventTranslator();
  return events.flatMap((e) => translator.translate(e)).map((e) => `${e.type}:${e.name}`);
}

describe('envd watch events', () => {
  test('a file written through the agent is create + write of the file, its temporary name hidden', () => {
    assert.deepEqual(translateAll(agentWrite('a.txt', 1)), ['create:a.txt', 'write:a.txt']);
    assert.deepEqual(translateAll(agentWrite('sub/dir/b.txt', 7)), ['create:sub/dir/b.txt', 'write:sub/dir/b.txt']);
  });

  test('other changes pass unchanged, and a failed upload (temporary file removed) shows nothing', () => {
    const events: WatchEvent[] = [
      { type: 'create', name: 'x' },
      { type: 'write', name: 'x' },
      { type: 'chmod', name: 'x' },
      { type: 'rename', name: 'x' },
      { type: 'create', name: 'y' },
      { type: 'create', name: '.z.den-2-3.tmp' },
      { type: 'remove', name: '.z.den-2-3.tmp' },
      { type: 'create', name: 'z' },
      { type: 'remove', name: 'y' },
      // Look-alikes that are not the agent's temporary names are user files.
      { type: 'create', name: '.q.den-tmp' },
    ];
    assert.deepEqual(translateAll(events), [
      'create:x',
      'write:x',
      'chmod:x',
      'rename:x',
      'create:y',
      'create:z',
      'remove:y',
      'create:.q.den-tmp',
    ]);
  });

  test('a create not preceded by the rename of its temporary file stays a create', () => {
    const translator = new WatchEventTranslator();
    translator.translate({ type: 'rename', name: '.a.den-1-1.tmp' });
    assert.deepEqual(translator.translate({ type: 'create', name: 'b' }), [{ type: 'create', name: 'b' }]);
  });
});
