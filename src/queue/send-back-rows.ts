import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { moveRows } from './move-rows.ts';
import { parkedIfDisabled } from './park-rows.ts';

export interface SendBack {
  /** Which rows (over alias `li`), built by the caller from the selectors below. */
  where: RawBuilder<unknown>;
  to: 'download' | 'thumbnail';
  /** Recorded as the row's last error and its class (SQL over the row, e.g. `last_error` to keep it); null clears it. */
  reason: RawBuilder<unknown> | string | null;
  errorClass: RawBuilder<unknown> | string | null;
}

/**
 * Send back: rows go back to an earlier stage, because what that stage made
 * is gone (an original or thumbnail missing from the store, a host gone with
 * its stores). Attempts reset; back in download, store_host is cleared (the
 * download stage claims only such rows), and a row of a disabled datasource
 * is parked there: waiting, it was downloaded at once from the source that was
 * stopped (its re-opening puts it back). A live row's served version
 * (`live_data`) is kept: it stays on the frontends and in the Interface.
 */
export async function sendBackRows(db: Db, s: SendBack): Promise<number> {
  const value = (v: RawBuilder<unknown> | string | null) => (v === null || typeof v === 'string' ? sql`${v}::text` : v);
  return moveRows(
    db,
    s.where,
    sql`stage = ${s.to}, state = ${s.to === 'download' ? parkedIfDisabled(sql`'waiting'`) : sql`'waiting'`}, attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now(),
        ${s.to === 'download' ? sql`store_host = '',` : sql``}
        locked_by = NULL, locked_at = NULL, last_error = ${value(typeof s.reason === 'string' ? maskUrlPasswords(s.reason) : s.reason)}, last_error_class = ${value(s.errorClass)}`,
  );
}

/** Rows by id, still in stage `from` and not held by a worker. */
export function idsInStage(ids: string[], from: string): RawBuilder<unknown> {
  return sql`li.id = ANY(${ids}::bigint[]) AND li.stage = ${from} AND li.locked_by IS NULL`;
}
