import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { settleMissedOriginRows } from '../queue/origin-rows.ts';

/** Rows followed at most: past it, new origin keys are refused (503) until some are settled. */
export const MAX_FOLLOWED = 1000;
/** How often the followed rows are looked at: one statement for all of them. */
const EVERY_MS = 1000;

/**
 * The rows lis_imaged inserted for origin keys whose request gave up while
 * their first download was still under way: a lis_downloadd claimed the new
 * row first and holds it past the request's deadline, so the request cannot
 * see whether the origin has the key. They are looked at again every second
 * until that download has ended: deleted when it found the key missing (as
 * the request would have), let go when it went anywhere else. Bounded, so that
 * random keys cannot grow the table faster than the daemons settle them:
 * `full` refuses new keys meanwhile. Held in memory: a row still followed when
 * lis_imaged stops stays (failed, if missed) until the weekly purge.
 */
export class MissedOriginRows {
  private readonly ids = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private settling: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  get full(): boolean {
    return this.ids.size >= MAX_FOLLOWED;
  }

  get size(): number {
    return this.ids.size;
  }

  /** Follows a row its request gave up on (a caller checks `full` before inserting the row). */
  follow(id: string): void {
    this.ids.add(id);
    this.timer ??= setInterval(() => void this.settle(), EVERY_MS).unref();
  }

  /** One look at every followed row; never rejects (a database outage is tried again at the next tick). */
  settle(): Promise<void> {
    this.settling = this.settling.then(() => this.lookAgain()).catch(() => {});
    return this.settling;
  }

  private async lookAgain(): Promise<void> {
    if (this.ids.size === 0) return;
    const ids = [...this.ids];
    try {
      const { deleted, undecided } = await settleMissedOriginRows(this.db, ids);
      const still = new Set(undecided);
      for (const id of ids) if (!still.has(id)) this.ids.delete(id);
      if (deleted) this.log.debug(`${deleted} rows of origin keys the origin lacks deleted after their download`, { scope: 'Imaged::origin' });
    } catch (error) {
      this.log.warn(`Could not look at ${ids.length} rows of origin keys after their download: ${errorMessage(error)}`, { scope: 'Imaged::origin' });
    }
    if (this.ids.size === 0) this.stopTimer();
  }

  /** A last look, then no more. */
  async close(): Promise<void> {
    this.stopTimer();
    await this.settle();
    if (this.ids.size) this.log.warn(`Stopping with ${this.ids.size} rows of origin keys whose download has not ended`, { scope: 'Imaged::origin' });
    this.ids.clear();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
