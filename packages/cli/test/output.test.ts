import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAge, formatBytes, formatDuration, formatMB, table } from '../src/output.js';
import { ProgressBar } from '../src/progress.js';

describe('output formatting', () => {
  it('aligns table columns without trailing spaces', () => {
    assert.equal(
      table(
        ['ID', 'NAME', 'STATE'],
        [
          ['a1', 'dev', 'running'],
          ['b22', '-', 'stopped'],
        ],
      ),
      'ID    NAME   STATE\na1    dev    running\nb22   -      stopped\n',
    );
  });

  it('formats sizes, limits, ages and durations', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(3 * 1024 * 1024), '3.0 MiB');
    assert.equal(formatMB(512), '512 MiB');
    assert.equal(formatMB(2048), '2 GiB');
    assert.equal(formatMB(1536), '1536 MiB');
    const now = Date.parse('2025-01-01T12:00:00Z');
    assert.equal(formatAge('2025-01-01T11:59:59Z', now), '1 second ago');
    assert.equal(formatAge('2025-01-01T11:57:00Z', now), '3 minutes ago');
    assert.equal(formatAge('2024-12-30T12:00:00Z', now), '2 days ago');
    assert.equal(formatAge('not a date', now), 'not a date');
    assert.equal(formatDuration(93_000), '1m 33s');
    assert.equal(formatDuration(7_500_000), '2h 5m');
  });

  it('draws a progress bar only on a terminal', () => {
    const written: string[] = [];
    const tty = { isTTY: true, columns: 100, write: (t: string) => written.push(t) };
    const bar = new ProgressBar(tty, 'a.bin', 4 * 1024 * 1024);
    bar.tick(2 * 1024 * 1024);
    assert.match(
      bar.line(Date.now() + 1000),
      /^a\.bin {2}\[#+\.+\] {2}50% {2}2\.0 MiB \/ 4\.0 MiB {2}[\d.]+ [KMG]?i?B\/s$/,
    );
    bar.finish();
    assert.ok(written.at(-1)?.endsWith('\n'));
    const pipe: string[] = [];
    const quiet = new ProgressBar({ isTTY: false, write: (t: string) => pipe.push(t) }, 'a.bin', 10);
    quiet.tick(5);
    quiet.finish();
    assert.deepEqual(pipe, []);
  });
});
