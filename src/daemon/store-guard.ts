import type { Logger } from '../log/create-logger.ts';
import { abortableDelay } from '../util/abortable-delay.ts';
import { checkReadable, checkStore, type StoreHealth, type StoreLimits } from './store-check.ts';

export interface StoreGuardOptions {
  /** The folders the stage writes. */
  dirs: string[];
  /**
   * The folders the stage reads, which must be there: looked at only after the stage reported one missing
   * (a folder that is not there yet on a new install pauses nothing), and until it is back.
   */
  readDirs?: string[];
  limits: StoreLimits;
  /** Free space is looked at no more often than this while all is well. */
  checkEverySeconds: number;
  /**
   * Whether rows of this host have files in the stores the stage writes (rows past its stage): an empty
   * store without its marker is then a disk that is not mounted (see checkStoreMarker).
   */
  expectsFiles?: () => Promise<boolean>;
  /** The cap of the backoff between checks while paused. */
  retryMaxSeconds: number;
  log: Logger;
  scope: string;
  onHealth?: (health: StoreHealth) => void;
  /** Records the pause (a reason) and its end (null), e.g. in workers.paused_reason. */
  onPause: (reason: string | null) => Promise<void>;
}

/**
 * Back-pressure on our own stores: before each claim the stage's stores are
 * checked (statfs against the minimum, and a probe write when something
 * failed), and, after the stage found one missing, the folders it reads;
 * while one cannot be used the stage claims nothing, says why at error level
 * with the real errno, and looks again with a capped backoff, resuming by
 * itself once the store is fine.
 */
export class StoreGuard {
  private lastCheck = -Infinity;
  private suspect = false;
  paused: string | null = null;
  private pausedKind: 'writable' | 'readable' = 'writable';

  constructor(private readonly options: StoreGuardOptions) {}

  /** A stage reported a store fault: look again before the next claim. */
  flag(): void {
    this.suspect = true;
  }

  /** Returns once every store is writable (at once, mostly), or when `signal` aborts. */
  async waitWritable(signal: AbortSignal): Promise<void> {
    const { dirs, log, scope } = this.options;
    if (dirs.length === 0 && !this.options.readDirs?.length) return;
    if (!this.suspect && performance.now() - this.lastCheck < this.options.checkEverySeconds * 1000) return;
    for (let attempt = 0; !signal.aborted; attempt++) {
      const bad = await this.checkAll();
      if (!bad) {
        if (this.paused !== null) {
          log.info(`Store ${this.pausedKind} again, resuming: ${this.paused} is over`, { scope });
          this.paused = null;
          await this.options.onPause(null).catch(() => {});
        }
        this.suspect = false;
        return;
      }
      const delay = Math.min(this.options.retryMaxSeconds, 2 ** Math.min(attempt, 20)) * 1000;
      if (this.paused === null || attempt === 0) {
        log.error(
          `Store not ${bad.kind}, pausing (no rows claimed, none charged): ${bad.reason}; looking again with backoff up to ${this.options.retryMaxSeconds}s`,
          {
            scope,
          },
        );
        this.paused = bad.reason;
        this.pausedKind = bad.kind;
        await this.options.onPause(bad.reason).catch((error: Error) => log.warn(`Cannot record the pause: ${error.message}`, { scope }));
      }
      await abortableDelay(delay, signal);
    }
  }

  /** The first store's trouble, or null when all are fine. */
  private async checkAll(): Promise<{ kind: 'writable' | 'readable'; reason: string } | null> {
    this.lastCheck = performance.now();
    if (this.suspect)
      for (const dir of this.options.readDirs ?? []) {
        const unreadable = await checkReadable(dir);
        if (unreadable) return { kind: 'readable', reason: unreadable };
      }
    for (const dir of this.options.dirs) {
      const health = await checkStore(dir, this.options.limits, this.options.expectsFiles);
      this.options.onHealth?.(health);
      if (!health.ok) return { kind: 'writable', reason: health.reason! };
    }
    return null;
  }
}
