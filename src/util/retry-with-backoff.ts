import { abortableDelay } from './abortable-delay.ts';

export interface RetryOptions {
  /** Tries stop once this long has passed since the first: the last error is thrown. */
  retryForMs: number;
  /** Aborted (SIGTERM): no more tries; the last error is thrown. */
  signal: AbortSignal;
  /** Whether a failure may mend itself (an outage): any other is thrown at once. */
  retryable: (error: unknown) => boolean;
  /** Told of each failure that will be tried again, and after how long: for the operator's log. */
  onRetry: (error: unknown, delayMs: number) => void;
}

/** The wait after failed try `attempt` (1, 2, ...): 1 s, 2 s, 4 s ... up to 30 s; the database outages' backoff (start-up, claims, writes). Pure. */
export function backoffDelayMs(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** attempt);
}

/**
 * Runs `attempt` until it succeeds, waiting out the failures `retryable` accepts: what a service does at start when
 * something it needs (its database) is away for a while, since it is a supervisor's process and nobody is there to
 * run it again by hand.
 */
export async function retryWithBackoff<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const deadline = performance.now() + options.retryForMs;
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!options.retryable(error) || performance.now() > deadline || options.signal.aborted) throw error;
      const delay = backoffDelayMs(tries);
      options.onRetry(error, delay);
      await abortableDelay(delay, options.signal);
      if (options.signal.aborted) throw error;
    }
  }
}
