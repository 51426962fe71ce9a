/** Durations of the steps of one operation, for the log (where start and stop spend their time). */
export class StepTimer {
  readonly steps: Record<string, number> = {};
  private last = performance.now();

  mark(step: string): void {
    const now = performance.now();
    this.steps[step] = Math.round(now - this.last);
    this.last = now;
  }

  /** Times a step that runs beside others: its own duration (the next `mark` covers the whole parallel part). */
  async timed<T>(step: string, run: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await run();
    } finally {
      this.steps[step] = Math.round(performance.now() - start);
    }
  }
}
