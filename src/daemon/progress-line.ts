/** Pure: `12,500 rows done (2,480/s), 3 failed` for the terminal's status line. */
export function formatProgress(done: number, failed: number, elapsedMs: number, noun = 'rows done'): string {
  const rate = elapsedMs > 0 ? Math.round((done / elapsedMs) * 1000) : 0;
  return `${done.toLocaleString('en-GB')} ${noun} (${rate.toLocaleString('en-GB')}/s), ${failed.toLocaleString('en-GB')} failed`;
}

/**
 * A status line rewritten in place on a terminal, and nothing at all when
 * the output is a file or a pipe (services, tests).
 */
export class ProgressLine {
  private timer: NodeJS.Timeout | null = null;
  private readonly started = Date.now();
  private shown = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly read: () => { done: number; failed: number },
    private readonly noun?: string,
  ) {}

  start(): this {
    if (!this.stream.isTTY) return this;
    this.timer = setInterval(() => this.draw(), 1000);
    this.timer.unref();
    return this;
  }

  private draw(): void {
    const { done, failed } = this.read();
    this.stream.write(`\r\x1b[2K${formatProgress(done, failed, Date.now() - this.started, this.noun)}`);
    this.shown = true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.shown) {
      this.draw();
      this.stream.write('\n');
    }
  }
}
