import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { releaseHeldByExcept } from '../queue/release-rows.ts';

/**
 * The queued rows this process holds for its requests (claimed by id for a request, until their stage ends or
 * they are given back), and what it does after a lost connection: a database restored from a backup, or failed
 * over, may say this worker holds rows that no request of it has in hand (claimed when the backup was taken).
 * lis_imaged keeps beating, so lis_managerd never takes it for dead, and such rows stayed locked, every request
 * for their images waiting for "a daemon" that was this process, until the manager found the worker wedged. Once
 * a connection was lost they are given back, uncharged, as the daemons give back theirs (run-daemon.ts).
 *
 * The give-back and the claims exclude each other: a claim committed but not yet answered would be taken for a
 * stray, and given back under the request working it.
 */
export class HeldRows {
  private readonly inHand = new Set<string>();
  private claiming = 0;
  private sweeping: Promise<void> | null = null;
  /** Connections lost so far, and how many of those a give-back has followed. */
  private losses = 0;
  private swept = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly workerId: string,
    private readonly log: Logger,
  ) {}

  /** Rows in hand now (for tests and diagnostics). */
  get size(): number {
    return this.inHand.size;
  }

  /**
   * Claims row `id` with `take` (null: not claimed), never while a give-back reads what this process holds. A row
   * taken stays in hand until done(id); one that failed to be taken (the claim's error) is not.
   */
  async claim<T>(id: string, take: () => Promise<T | null>): Promise<T | null> {
    while (this.sweeping) await this.sweeping;
    this.claiming++;
    this.inHand.add(id);
    try {
      const row = await take();
      if (!row) this.inHand.delete(id);
      return row;
    } catch (error) {
      this.inHand.delete(id);
      throw error;
    } finally {
      this.claiming--;
    }
  }

  /** Row `id` is no longer this process's: its stage ended (finished, failed, deferred) or it was given back. */
  done(id: string): void {
    this.inHand.delete(id);
  }

  /** A connection of the pool was lost: what the database says this worker holds is looked at on the next turn. */
  lost(): void {
    this.losses++;
  }

  /** Looks every `everyMs` whether a give-back is due (after a loss), and makes it when no claim is under way. */
  start(everyMs: number): void {
    this.timer ??= setInterval(() => void this.sweep(), everyMs).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Gives back the rows the database says this worker holds that no request has in hand, if a loss made that due
   * and no claim is under way (else on a later turn). The database still away: due still, tried on the next turn.
   * Never rejects.
   */
  sweep(): Promise<void> {
    if (this.swept === this.losses || this.claiming > 0 || this.sweeping) return this.sweeping ?? Promise.resolve();
    const losses = this.losses;
    const kept = [...this.inHand];
    this.sweeping = releaseHeldByExcept(this.db, this.workerId, kept)
      .then((freed) => {
        // A loss during the give-back is looked at again on the next turn.
        this.swept = losses;
        if (freed > 0)
          this.log.warn(
            `Gave back ${freed} rows the database says this worker holds and no request has in hand (after a lost connection: a database restored from a backup, or failed over): no attempt charged`,
            { scope: 'Imaged::stage' },
          );
      })
      .catch((error: unknown) => {
        this.log.debug(`Could not yet look for rows held by no request (${errorMessage(error)}); trying again`, { scope: 'Imaged::stage' });
      })
      .finally(() => {
        this.sweeping = null;
      });
    return this.sweeping;
  }
}
