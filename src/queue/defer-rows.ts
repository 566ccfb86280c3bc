import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { relistColumns, runTransition } from './claimable-rows.ts';
import { parkedIfDisabled } from './park-rows.ts';

/** A row given back because of our own fault (a store, a frontend, the database): the row is not to blame. */
export interface DeferredRow {
  id: string;
  /** For people: what went wrong on our side. */
  reason: string;
  /** An `ours` class of src/failure/failure-reasons.ts. */
  errorClass: string;
  /** Seconds before it may be claimed again (0: at once). */
  delaySeconds: number;
}

/**
 * Gives rows back unharmed: unlocked and claimable again after their delay,
 * with the reason shown, but no attempt counted and the same-error streak
 * left as it was (failRows counts it by streak_class, not by the class shown
 * here), so nothing ever becomes permanent or parked for our fault, and our
 * hiccups between a source's failures neither reset nor extend its streak.
 * Only rows this worker still holds are touched; returns how many.
 */
export async function deferRows(db: Db, workerId: string, rows: DeferredRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  // The lock step carries the batch's values, so the UPDATE joins one row source (see fail-rows.ts).
  return runTransition(db, {
    mayBeListed: false,
    candidates: sql`SELECT v.* FROM unnest(${rows.map((r) => r.id)}::bigint[], ${rows.map((r) => r.delaySeconds)}::float8[],
                                           ${rows.map((r) => maskUrlPasswords(r.reason))}::text[], ${rows.map((r) => r.errorClass)}::text[])
                           AS v(id, delay, reason, error_class)
                      JOIN live_images li ON li.id = v.id
                     WHERE li.locked_by = ${workerId}`,
    update: sql`
    UPDATE live_images AS li
       SET state = ${parkedIfDisabled(sql`li.state`)},
           next_attempt_at = now() + make_interval(secs => v.delay),
           last_error = left(v.reason, 2000),
           last_error_class = v.error_class,
           locked_by = NULL, locked_at = NULL,
           updated_at = now()
      FROM locked AS v
     WHERE li.id = v.id
    RETURNING ${relistColumns('li')}`,
  });
}
