import { decodeJson, type ExitInfo, type Frame, FrameType } from '@den/shared';
import type { ProcessHandle } from '../src/client.js';

/** Reads a process stream in the background, so a test can wait for text to appear. */
export class OutputReader {
  private text = '';
  private readonly frames: Frame[] = [];
  private readonly done: Promise<void>;
  private wake: (() => void) | undefined;

  constructor(handle: ProcessHandle) {
    this.done = (async () => {
      for await (const f of handle.frames()) {
        this.frames.push(f);
        if (f.type === FrameType.STDOUT) this.text += Buffer.from(f.payload).toString();
        this.wake?.();
      }
      this.wake?.();
    })();
    this.done.catch(() => undefined);
  }

  private async until<T>(get: () => T | undefined, what: string, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = get();
      if (v !== undefined) return v;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; output so far: ${JSON.stringify(this.text)}`);
      await Promise.race([new Promise<void>((r) => (this.wake = r)), new Promise((r) => setTimeout(r, 50)), this.done]);
    }
  }

  pid(): Promise<number> {
    return this.until(() => {
      const f = this.frames.find((x) => x.type === FrameType.STARTED);
      return f ? decodeJson<{ pid: number }>(f).pid : undefined;
    }, 'STARTED');
  }

  get output(): string {
    return this.text;
  }

  /** every frame of a type seen so far */
  framesOf(type: number): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }

  waitFor(text: string): Promise<true> {
    return this.until(() => (this.text.includes(text) ? true : undefined), JSON.stringify(text));
  }

  exit(): Promise<ExitInfo> {
    return this.until(() => {
      const f = this.frames.find((x) => x.type === FrameType.EXIT);
      return f ? decodeJson<ExitInfo>(f) : undefined;
    }, 'EXIT');
  }
}
