/**
 * Admission of images by the pixels their decoding holds, not by their count:
 * eight 49-megapixel interlaced PNGs must not be decoded at once just because
 * eight 2-megapixel photos may. Each image asks for its cost (from the header,
 * before a pixel is decoded) and waits until the budget has room. Waiters are
 * served in order, so a big image is not starved by a stream of small ones; an
 * image larger than the whole budget runs alone (serialised, never refused:
 * `thumbnail.maxPixels` is what refuses). No I/O: pure bookkeeping.
 *
 * Not async-mutex's weighted Semaphore, which does the same admission: every release walks its waiters by weight,
 * one step per unit of the free weight (`_drainUnlockWaiters`, 0.5.0), and a budget is counted in pixels (25
 * million by default). Tried in 9c4216e: lis_thumbnaild's main thread took 142-151 ms of CPU an image in bench:e2e,
 * against 6.1-6.3 with this class, and the system fell to 0.20x the plain sharp loop (1.19x with this class, the
 * same hour).
 */
export class PixelBudget {
  private inUse = 0;
  private running = 0;
  private readonly waiting: Array<{ pixels: number; admit: () => void }> = [];

  /** `limit`: decoded pixels held at once (`thumbnail.pixelBudget`). */
  constructor(readonly limit: number) {
    if (!(limit > 0)) throw new RangeError(`pixel budget must be positive, got ${limit}`);
  }

  /** Pixels admitted and not yet released. */
  get held(): number {
    return this.inUse;
  }

  /** Images waiting for room. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Waits for room for `pixels`, then holds them until the returned release
   * is called (once; later calls do nothing).
   */
  async acquire(pixels: number): Promise<() => void> {
    const cost = Math.max(0, pixels);
    if (this.waiting.length === 0 && this.fits(cost)) this.take(cost);
    else await new Promise<void>((admit) => this.waiting.push({ pixels: cost, admit }));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= cost;
      this.running--;
      this.admitWaiting();
    };
  }

  /** Room for `cost`: within the limit, or nothing else running (a too-big image goes alone). */
  private fits(cost: number): boolean {
    return this.running === 0 || this.inUse + cost <= this.limit;
  }

  private take(cost: number): void {
    this.inUse += cost;
    this.running++;
  }

  /** In order: the first waiter that does not fit holds back those behind it. */
  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0].pixels)) {
      const next = this.waiting.shift()!;
      this.take(next.pixels);
      next.admit();
    }
  }
}

/** What a header tells of the decode. */
export interface DecodeHeader {
  format: string;
  width: number;
  height: number;
}

/**
 * Pixels the decoder holds for an original of `header` made into a picture of
 * `target` (the working size): a JPEG shrinks on load by 2, 4 or 8 as long as
 * the result still covers the target; every other format is counted whole (an
 * interlaced PNG is decoded whole into memory; the others are counted the same,
 * to stay on the safe side). Plus the working picture itself. Pure.
 */
export function decodeCost(header: DecodeHeader, target: { width: number; height: number }): number {
  let shrink = 1;
  if (header.format === 'jpeg') {
    for (const s of [8, 4, 2]) {
      if (Math.floor(header.width / s) >= target.width && Math.floor(header.height / s) >= target.height) {
        shrink = s;
        break;
      }
    }
  }
  return Math.ceil(header.width / shrink) * Math.ceil(header.height / shrink) + target.width * target.height;
}
