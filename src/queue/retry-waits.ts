import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { ClaimScope } from './release-rows.ts';

/** Rows of a claim scope that wait for a retry not due yet: how many, when they come due, and mostly why. */
export interface RetryWaits {
  rows: number;
  /** When the first and the last of them may be claimed again; null when there are none. */
  first: Date | null;
  last: Date | null;
  /** The most common reason among them (their last_error), and its class. */
  reason: string | null;
  errorClass: string | null;
  /** How many other reasons the rest have. */
  otherReasons: number;
  /** The database's clock as it read them: what `first` and `last` are relative to (toHostClock). */
  dbNow: Date;
}

/**
 * The rows a worker's claims would take but may not yet: waiting, unlocked, their retry time to come (given
 * back for our own fault, `queue.oursRetrySeconds`, or failed by the source and backing off). What a run by
 * hand leaves behind when it ends with "No rows gained". One read of the country's backlog
 * (live_images_waiting), once at the end of a run.
 */
export async function retryWaits(db: Db, scope: Omit<ClaimScope, 'workerId'>): Promise<RetryWaits> {
  const { rows } = await sql<{
    n: number;
    first: Date | null;
    last: Date | null;
    reason: string | null;
    error_class: string | null;
    reasons: number;
    db_now: Date;
  }>`
    WITH later AS (
      SELECT next_attempt_at, last_error, last_error_class FROM live_images
       WHERE state = 'waiting' AND country = ${scope.country} AND stage = ${scope.stage} AND store_host = ${scope.storeHost}
         AND locked_by IS NULL AND next_attempt_at > now()),
    top AS (
      SELECT last_error, last_error_class FROM later GROUP BY 1, 2 ORDER BY count(*) DESC, 1 LIMIT 1)
    SELECT count(*)::int AS n, min(next_attempt_at) AS first, max(next_attempt_at) AS last,
           (SELECT last_error FROM top) AS reason, (SELECT last_error_class FROM top) AS error_class,
           count(DISTINCT (coalesce(last_error, ''), coalesce(last_error_class, '')))::int AS reasons, now() AS db_now
      FROM later`.execute(db);
  const [r] = rows;
  return {
    rows: r.n,
    first: r.first,
    last: r.last,
    reason: r.reason,
    errorClass: r.error_class,
    otherReasons: Math.max(0, r.reasons - 1),
    dbNow: r.db_now,
  };
}
