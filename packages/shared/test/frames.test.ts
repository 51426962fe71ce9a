import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJson, encodeFrame, encodeJsonFrame, FrameDecoder, FrameType, MAX_FRAME_BYTES } from '../src/frames.js';

test('frames survive being split at every byte boundary', () => {
  const wire = Buffer.concat([
    encodeJsonFrame(FrameType.STARTED, { pid: 42 }),
    encodeFrame(FrameType.STDOUT, 'hello'),
    encodeFrame(FrameType.STDIN_EOF),
    encodeFrame(FrameType.STDERR, Buffer.from([0, 255, 10])),
  ]);
  for (let cut = 0; cut <= wire.length; cut++) {
    const d = new FrameDecoder();
    const frames = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
    assert.equal(frames.length, 4);
    assert.deepEqual(decodeJson(frames[0]!), { pid: 42 });
    assert.equal(Buffer.from(frames[1]!.payload).toString(), 'hello');
    assert.equal(frames[2]!.type, FrameType.STDIN_EOF);
    assert.equal(frames[2]!.payload.length, 0);
    assert.deepEqual([...frames[3]!.payload], [0, 255, 10]);
    assert.equal(d.hasPartial, false);
  }
});

test('a partial frame is reported and an absurd length is refused', () => {
  const d = new FrameDecoder();
  assert.deepEqual(d.push(encodeFrame(FrameType.STDOUT, 'abc').subarray(0, 6)), []);
  assert.equal(d.hasPartial, true);
  const bad = Buffer.alloc(5);
  bad.writeUInt8(FrameType.STDOUT, 0);
  bad.writeUInt32BE(MAX_FRAME_BYTES + 1, 1);
  assert.throws(() => new FrameDecoder().push(bad), /exceeds/);
});
