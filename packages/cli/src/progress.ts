import { formatBytes } from './output.js';

/** The part of a terminal stream progress output needs (process.stderr satisfies it). */
export interface TerminalStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const SPINNER_FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const CLEAR_LINE = '\r\x1b[2K';

/** A one-line spinner with a message; does nothing when the stream is not a terminal. */
export class Spinner {
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;

  constructor(
    private readonly stream: TerminalStream,
    private text: string,
  ) {}

  start(): this {
    if (!this.stream.isTTY || this.timer) return this;
    this.render();
    this.timer = setInterval(() => this.render(), 80);
    return this;
  }

  update(text: string): void {
    this.text = text;
  }

  /** Removes the spinner line, leaving the cursor at the start of an empty line. */
  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.stream.write(CLEAR_LINE);
  }

  private render(): void {
    const glyph = SPINNER_FRAMES[this.frame++ % SPINNER_FRAMES.length];
    this.stream.write(`${CLEAR_LINE}${glyph} ${this.text}`);
  }
}

/**
 * A transfer progress bar: `name  [#######.........]  42%  12.0 MiB / 28.5 MiB  9.1 MiB/s`. Redraws at most
 * ten times a second; does nothing when the stream is not a terminal.
 */
export class ProgressBar {
  private done = 0;
  private lastDraw = 0;
  private readonly startedAt = Date.now();
  private readonly enabled: boolean;

  constructor(
    private readonly stream: TerminalStream,
    private readonly label: string,
    private readonly total: number,
  ) {
    this.enabled = Boolean(stream.isTTY);
  }

  /** Adds `bytes` transferred. */
  tick(bytes: number): void {
    this.done += bytes;
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw >= 100) {
      this.lastDraw = now;
      this.stream.write(CLEAR_LINE + this.line(now));
    }
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    if (!this.enabled) return;
    this.stream.write(`${CLEAR_LINE}${this.line(Date.now())}\n`);
  }

  /** Removes the bar (after a failure, before the error line). */
  clear(): void {
    if (this.enabled) this.stream.write(CLEAR_LINE);
  }

  /** The bar's text for `now` (exposed for tests). */
  line(now: number): string {
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const seconds = Math.max(0.001, (now - this.startedAt) / 1000);
    const rate = `${formatBytes(Math.round(this.done / seconds))}/s`;
    const sizes = `${formatBytes(this.done)} / ${formatBytes(this.total)}`;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    const columns = this.stream.columns || 80;
    const fixed = this.label.length + sizes.length + rate.length + percent.length + 12;
    const width = Math.max(10, Math.min(40, columns - fixed));
    const filled = Math.round(fraction * width);
    return `${this.label}  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${percent}  ${sizes}  ${rate}`;
  }
}
