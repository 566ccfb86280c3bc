import { Semaphore } from 'async-mutex';

/**
 * Admission of images by the pixels their decoding holds, not by their count:
 * eight 49-megapixel interlaced PNGs must not be decoded at once just because
 * eight 2-megapixel photos may. Each image asks for its cost (from the header,
 * before a pixel is decoded) and waits until the budget has room. Waiters are
 * served in order, so a big image is not starved by a stream of small ones; an
 * image larger than the whole budget runs alone (serialised, never refused:
 * `thumbnail.maxPixels` is what refuses). No I/O: pure bookkeeping.
 *
 * The waiting is async-mutex's weighted Semaphore (first in line first served; a waiter that does not fit holds
 * back those behind it, which is what keeps a big image from starving). A cost over the whole budget asks for the
 * whole budget, so it is admitted once nothing else runs, and alone. `held` and `queued` count the real costs.
 */
export class PixelBudget {
  private readonly semaphore: Semaphore;
  private inUse = 0;
  private waiters = 0;

  /** `limit`: decoded pixels held at once (`thumbnail.pixelBudget`). */
  constructor(readonly limit: number) {
    if (!(limit > 0)) throw new RangeError(`pixel budget must be positive, got ${limit}`);
    this.semaphore = new Semaphore(limit);
  }

  /** Pixels admitted and not yet released. */
  get held(): number {
    return this.inUse;
  }

  /** Images waiting for room. */
  get queued(): number {
    return this.waiters;
  }

  /**
   * Waits for room for `pixels`, then holds them until the returned release
   * is called (once; later calls do nothing).
   */
  async acquire(pixels: number): Promise<() => void> {
    const cost = Math.max(0, pixels);
    // The semaphore takes weights in (0, limit]: a picture of no pixels still takes its turn, one too big the whole budget.
    const weight = Math.min(this.limit, Math.max(cost, 1));
    this.waiters++;
    let releaseWeight: () => void;
    try {
      [, releaseWeight] = await this.semaphore.acquire(weight);
    } finally {
      this.waiters--;
    }
    this.inUse += cost;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= cost;
      releaseWeight();
    };
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
