import type { LisConfig } from '../config/config-schema.ts';

/**
 * Once the daemon is stopping, a database call is waited for at most database.stopWaitSeconds (5 s), and once
 * one went unanswered the rest are not waited for at all: a database that hangs must not hold the exit past its grace
 * (services.stopTimeoutSeconds, 60 s) for up to its query bound (database.queryTimeoutSeconds, 120 s). What is left unwritten is the
 * manager's to give back. Per call, not from the stop: the rows in hand may finish long after the signal
 * (a download up to its timeout), and their results must still be written.
 */
export function stopDatabaseWaitMs(config: LisConfig): number {
  return config.database.stopWaitSeconds * 1000;
}

/** The stop's waits on the database: per call, until one goes unanswered. */
export class StopWait {
  /** Set when a call went unanswered after the stop: the database hangs, so no later call is waited for. */
  private hung = false;
  /** True once a call went unanswered after the stop. */
  get unanswered(): boolean {
    return this.hung;
  }
  constructor(
    readonly signal: AbortSignal,
    private readonly waitMs: number,
  ) {}
  /** What a database call came to: its value, or `stopped` when the stop came and it went unanswered. */
  answered<T>(call: Promise<T>): Promise<T | 'stopped'> {
    return new Promise<T | 'stopped'>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onStop = () =>
        (timer = setTimeout(
          () => {
            this.hung = true;
            resolve('stopped');
          },
          this.hung ? 0 : this.waitMs,
        ));
      if (this.signal.aborted) onStop();
      else this.signal.addEventListener('abort', onStop, { once: true });
      call.then(resolve, reject).finally(() => {
        clearTimeout(timer);
        this.signal.removeEventListener('abort', onStop);
      });
    });
  }
}
