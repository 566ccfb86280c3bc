import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { releaseRows } from '../queue/release-rows.ts';

/** How often rows still owed are given back while there are any. */
const EVERY_MS = 1000;

/**
 * Rows this process claimed for a request and could not give back, because
 * the database went away between the claim and the stage's end. Nobody else
 * would: lis_imaged keeps beating, so lis_managerd never takes it for dead,
 * and every later request for the image waited for "a daemon" that was this
 * process, until it restarted. They are given back (releaseRows, uncharged)
 * every second until the database takes it.
 */
export class UnreleasedRows {
  private readonly ids = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private trying: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly workerId: string,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.ids.size;
  }

  /** Gives the row back now; if the database refuses, keeps it and tries again every second. Never rejects. */
  async giveBack(id: string): Promise<void> {
    try {
      await releaseRows(this.db, this.workerId, [id]);
    } catch (error) {
      this.log.warn(`Could not give back row ${id} (${errorMessage(error)}); trying again every second`, { scope: 'Imaged::stage' });
      this.ids.add(id);
      this.timer ??= setInterval(() => void this.retry(), EVERY_MS).unref();
    }
  }

  /**
   * Before this process claims `id` again: a release still owed for it is made now, so that a later retry cannot
   * take the row from under the new claim (both are this worker's). Rejects, keeping it owed, when the database
   * still refuses: the claim would fail too.
   */
  async settle(id: string): Promise<void> {
    if (!this.ids.has(id)) return;
    // A retry under way may still be releasing it: after that, not alongside (its release could land after our claim).
    await this.trying;
    if (!this.ids.has(id)) return;
    await releaseRows(this.db, this.workerId, [id]);
    this.ids.delete(id);
  }

  /** One more try for every row owed; never rejects. */
  retry(): Promise<void> {
    this.trying = this.trying.then(() => this.tryAll()).catch(() => {});
    return this.trying;
  }

  private async tryAll(): Promise<void> {
    if (this.ids.size === 0) return this.stop();
    const ids = [...this.ids];
    await releaseRows(this.db, this.workerId, ids);
    for (const id of ids) this.ids.delete(id);
    this.log.info(`Gave back ${ids.length} rows held since the database went away`, { scope: 'Imaged::stage' });
    this.stop();
  }

  /**
   * A last try, then no more. What is left stays counted in `size`: the stop mark says so (markStopped's
   * leftHeld), and lis_managerd releases those rows once this worker is stopped.
   */
  async close(): Promise<void> {
    this.stop();
    await this.retry();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
