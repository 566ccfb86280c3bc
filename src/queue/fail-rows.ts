import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { retryDelaySeconds, type BackoffPolicy } from './backoff.ts';
import { relistColumns, runTransition } from './claimable-rows.ts';
import { parkedIfDisabled } from './park-rows.ts';

/** Why a row could not be worked, as a stage reports it. */
export interface RowFailure {
  id: string;
  /** The row's attempts before this one (as claimed). */
  attempts: number;
  /** For people: `HTTP 404 Not Found`, `not an image (starts with "<!DOCTYPE")`. */
  reason: string;
  /** Stable, for counting and `lis retry --reason`: `http_404`, `timeout`, `not_image`. */
  errorClass: string;
  /** True when trying again later can help (timeouts, 5xx); false for what will never work (404). */
  retryable: boolean;
  /** The server's Retry-After, when it sent one. */
  retryAfterSeconds?: number;
}

export interface FailurePolicy {
  maxAttempts: number;
  backoff: BackoffPolicy;
}

export interface FailureOutcome {
  id: string;
  state: 'waiting' | 'failed';
  /** Seconds until the next attempt; 0 when failed for good. */
  delaySeconds: number;
}

/** Pure: decides retry-with-backoff or permanent failure for each row. */
export function decideFailures(failures: RowFailure[], policy: FailurePolicy, random?: () => number): FailureOutcome[] {
  return failures.map((f) => {
    const attempt = f.attempts + 1;
    if (f.retryable && attempt < policy.maxAttempts) {
      return { id: f.id, state: 'waiting', delaySeconds: retryDelaySeconds(attempt, policy.backoff, f.retryAfterSeconds, random) };
    }
    return { id: f.id, state: 'failed', delaySeconds: 0 };
  });
}

/**
 * Records failures on rows this worker holds, in one statement: a retryable
 * one waits for its backoff, the rest (and the retryable ones out of
 * attempts) become `failed` with the reason. Returns how many were updated.
 */
export async function failRows(
  db: Db,
  workerId: string,
  failures: RowFailure[],
  policy: FailurePolicy,
): Promise<{ updated: number; failed: number; retrying: number }> {
  if (failures.length === 0) return { updated: 0, failed: 0, retrying: 0 };
  const outcomes = decideFailures(failures, policy);
  // The lock step carries the batch's values, so the UPDATE joins one row source (see finish-rows.ts).
  const updated = await runTransition(db, {
    mayBeListed: false,
    candidates: sql`SELECT v.* FROM unnest(${outcomes.map((o) => o.id)}::bigint[],
                                           ${outcomes.map((o) => o.state)}::text[],
                                           ${outcomes.map((o) => o.delaySeconds)}::float8[],
                                           ${failures.map((f) => maskUrlPasswords(f.reason))}::text[],
                                           ${failures.map((f) => f.errorClass)}::text[])
                           AS v(id, state, delay, reason, error_class)
                      JOIN live_images li ON li.id = v.id
                     WHERE li.locked_by = ${workerId}`,
    update: sql`
    UPDATE live_images AS li
       SET state = ${parkedIfDisabled(sql`v.state`)},
           attempts = li.attempts + 1,
           next_attempt_at = now() + make_interval(secs => v.delay),
           last_error = left(v.reason, 2000),
           last_error_class = v.error_class,
           -- The streak's own class, not last_error_class: a deferral since (deferRows) shows ours there.
           same_error_count = CASE WHEN li.streak_class = v.error_class THEN li.same_error_count + 1 ELSE 1 END,
           streak_class = v.error_class,
           locked_by = NULL, locked_at = NULL,
           updated_at = now()
      FROM locked AS v
     WHERE li.id = v.id
    RETURNING ${relistColumns('li')}`,
  });
  const failed = outcomes.filter((o) => o.state === 'failed').length;
  return { updated, failed, retrying: outcomes.length - failed };
}
