/**
 * The most recent output frames of a background process, bounded by bytes. Whole frames are evicted oldest
 * first, so a replay always starts at a frame boundary. Frames are numbered from 0 in the order they were pushed,
 * so a client that counted the output frames it received can continue where it stopped (`snapshot(from)`).
 */
export class OutputRing {
  private frames: Buffer[] = [];
  private head = 0;
  private total = 0;
  /** frames evicted so far: the number of the oldest frame held */
  private evicted = 0;

  constructor(private readonly limitBytes: number) {}

  push(frame: Buffer): void {
    this.frames.push(frame);
    this.total += frame.length;
    while (this.total > this.limitBytes && this.head < this.frames.length - 1) {
      this.total -= (this.frames[this.head] as Buffer).length;
      this.frames[this.head] = EMPTY;
      this.head++;
      this.evicted++;
    }
    // Compact once the evicted prefix dominates, keeping push amortised O(1).
    if (this.head > 1024 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
  }

  /** The buffered frames, oldest first; from frame number `from` on when given (older ones may be evicted). */
  snapshot(from = 0): Buffer[] {
    return this.frames.slice(this.head + Math.max(0, from - this.evicted));
  }

  get bytes(): number {
    return this.total;
  }
}

const EMPTY = Buffer.alloc(0);
