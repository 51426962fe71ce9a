import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DenError, encodeFrame, encodeJsonFrame, FrameType } from '@den/shared';
import { toArgv } from '../src/commands.js';
import { ExecutableNotFoundError, InvalidArgumentError } from '../src/errors.js';
import { ProcessFrames, pumpBody } from '../src/process-stream.js';

const exit = (exitCode: number | null, signal: string | null = null, timedOut = false) =>
  encodeJsonFrame(FrameType.EXIT, { exitCode, signal, timedOut });

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
}

describe('ProcessFrames', () => {
  it('reports the pid, the output and the exit', async () => {
    const seen: string[] = [];
    const frames = new ProcessFrames({ onStdout: (s) => seen.push(s) });
    frames.pushBytes(encodeJsonFrame(FrameType.STARTED, { pid: 12 }));
    frames.pushBytes(encodeFrame(FrameType.STDOUT, 'out'));
    frames.pushBytes(encodeFrame(FrameType.STDERR, 'err'));
    frames.pushBytes(exit(3));
    assert.equal(await frames.started, 12);
    assert.deepEqual(await frames.result(), {
      exitCode: 3,
      signal: null,
      timedOut: false,
      stdout: 'out',
      stderr: 'err',
    });
    assert.deepEqual(seen, ['out']);
  });

  it('decodes UTF-8 split across chunks and frames without mangling characters', async () => {
    const text = 'h\u00e9llo \u{1F600}';
    const bytes = Buffer.from(text);
    const frames = new ProcessFrames();
    const all = Buffer.concat([
      encodeJsonFrame(FrameType.STARTED, { pid: 1 }),
      encodeFrame(FrameType.STDOUT, bytes.subarray(0, 2)),
      encodeFrame(FrameType.STDOUT, bytes.subarray(2, 8)),
      encodeFrame(FrameType.STDOUT, bytes.subarray(8)),
      exit(0),
    ]);
    // Feed one byte at a time: frame boundaries and characters both fall mid-chunk.
    for (const b of all) frames.pushBytes(Uint8Array.of(b));
    assert.equal((await frames.result()).stdout, text);
  });

  it('passes raw bytes through and can skip collecting', async () => {
    const raw: number[] = [];
    const frames = new ProcessFrames({ onStdoutBytes: (b) => raw.push(...b), collectOutput: false });
    frames.pushBytes(encodeJsonFrame(FrameType.STARTED, { pid: 1 }));
    frames.pushBytes(encodeFrame(FrameType.STDOUT, Uint8Array.of(0xff, 0x00, 0xfe)));
    frames.pushBytes(exit(0));
    const result = await frames.result();
    assert.deepEqual(raw, [0xff, 0x00, 0xfe]);
    assert.equal(result.stdout, '');
  });

  it('throws the typed error an ERROR frame carries', async () => {
    const frames = new ProcessFrames();
    frames.pushBytes(
      encodeJsonFrame(FrameType.ERROR, { code: 'EXECUTABLE_NOT_FOUND', message: 'nope: command not found' }),
    );
    await assert.rejects(frames.started, ExecutableNotFoundError);
    await assert.rejects(frames.result(), /nope: command not found/);
  });

  it('fails when the stream ends before EXIT', async () => {
    const frames = new ProcessFrames();
    frames.pushBytes(encodeJsonFrame(FrameType.STARTED, { pid: 1 }));
    frames.pushBytes(encodeFrame(FrameType.STDOUT, 'abc').subarray(0, 3));
    frames.end();
    await assert.rejects(frames.exited, (err: unknown) => {
      assert.ok(err instanceof DenError);
      assert.match(err.message, /closed in the middle of a frame before the process exited/);
      return true;
    });
  });

  it('skips frame types it does not know', async () => {
    const frames = new ProcessFrames();
    frames.pushBytes(encodeJsonFrame(FrameType.STARTED, { pid: 1 }));
    frames.pushBytes(encodeFrame(99, 'future'));
    frames.pushBytes(exit(null, 'SIGKILL'));
    assert.deepEqual(await frames.exited, { exitCode: null, signal: 'SIGKILL', timedOut: false });
  });

  it('answers `started` with a known pid when attaching to a process', async () => {
    const frames = new ProcessFrames({}, 77);
    frames.pushBytes(exit(0));
    assert.equal(await frames.started, 77);
  });

  it('fails with the error of a throwing callback, through pumpBody', async () => {
    const frames = new ProcessFrames({
      onStdout: () => {
        throw new Error('callback broke');
      },
    });
    await pumpBody(
      streamOf([encodeJsonFrame(FrameType.STARTED, { pid: 1 }), encodeFrame(FrameType.STDOUT, 'x'), exit(0)]),
      frames,
    );
    await assert.rejects(frames.exited, /callback broke/);
  });

  it('reads a whole body with pumpBody', async () => {
    const frames = new ProcessFrames();
    await pumpBody(
      streamOf([encodeJsonFrame(FrameType.STARTED, { pid: 5 }), encodeFrame(FrameType.STDOUT, 'hi'), exit(0)]),
      frames,
    );
    assert.equal((await frames.result()).stdout, 'hi');
  });
});

describe('toArgv', () => {
  it('runs a string through a login shell and keeps an array as it is', () => {
    assert.deepEqual(toArgv('ls -l /'), ['bash', '-lc', 'ls -l /']);
    assert.deepEqual(toArgv(['ls', '-l', '/']), ['ls', '-l', '/']);
    assert.throws(() => toArgv(''), InvalidArgumentError);
    assert.throws(() => toArgv([]), InvalidArgumentError);
  });
});
