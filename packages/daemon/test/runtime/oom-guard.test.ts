import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DELAY_MS, MIN_DELAY_MS, nextDelayMs, pickVictim, unreclaimableKB } from '../../src/runtime/oom-guard.js';

describe('oom-guard', () => {
  it('counts anonymous and shared memory from /proc/meminfo', () => {
    const meminfo = 'MemTotal: 327680 kB\nMemFree: 1000 kB\nCached: 92352 kB\nAnonPages:  12400 kB\nShmem: 600 kB\n';
    assert.equal(unreclaimableKB(meminfo), 13000);
  });

  it('checks sooner as the headroom shrinks', () => {
    assert.equal(nextDelayMs(0, 4096 * 1024), MAX_DELAY_MS);
    assert.equal(nextDelayMs(200 * 1024, 256 * 1024), 28);
    assert.equal(nextDelayMs(255 * 1024, 256 * 1024), MIN_DELAY_MS);
    assert.equal(nextDelayMs(300 * 1024, 256 * 1024), MIN_DELAY_MS);
  });

  it('picks the largest process that is not protected', () => {
    const procs = [
      { pid: 1, rssKB: 900 },
      { pid: 2, rssKB: 800 },
      { pid: 7, rssKB: 300 },
      { pid: 9, rssKB: 500 },
    ];
    assert.deepEqual(pickVictim(procs, new Set([1, 2])), { pid: 9, rssKB: 500 });
    assert.equal(pickVictim(procs.slice(0, 2), new Set([1, 2])), undefined);
  });
});
