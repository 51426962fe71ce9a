import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ActivityTracker } from '../../src/services/activity.js';

describe('ActivityTracker', () => {
  test('remembers the last activity and hands out what is to be saved once', () => {
    const a = new ActivityTracker();
    assert.equal(a.lastSeen('s1'), undefined);
    a.touch('s1', 1000);
    a.touch('s1', 2000);
    a.touch('s2', 1500);
    assert.equal(a.lastSeen('s1'), 2000);
    assert.deepEqual(
      [...a.takeTouched()],
      [
        ['s1', 2000],
        ['s2', 1500],
      ],
    );
    assert.deepEqual([...a.takeTouched()], []);
  });

  test('counts open sessions; closing twice is harmless', () => {
    const a = new ActivityTracker();
    const first = a.openSession('s1');
    const second = a.openSession('s1');
    assert.equal(a.hasOpenSession('s1'), true);
    first();
    first();
    assert.equal(a.hasOpenSession('s1'), true, 'the second session is still open');
    second();
    assert.equal(a.hasOpenSession('s1'), false);
    assert.ok(a.lastSeen('s1') !== undefined, 'opening and closing count as activity');
  });

  test('forgets a removed sandbox', () => {
    const a = new ActivityTracker();
    a.openSession('s1');
    a.forget('s1');
    assert.equal(a.hasOpenSession('s1'), false);
    assert.equal(a.lastSeen('s1'), undefined);
    assert.deepEqual([...a.takeTouched()], []);
  });
});
