import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { claimableWhere } from './claimable-rows.ts';
import { moveRows } from './move-rows.ts';

export interface GiveUpRule {
  country?: string;
  /** Only rows with at least this many attempts, or at least this many failures in a row the same way. */
  minAttempts?: number;
  minSameErrors?: number;
  /** Failure classes that are not the row's fault (a frontend's outage): such rows are never given up. */
  exceptErrorClasses: readonly string[];
  /** When given, only rows whose last failure is one of these classes (the source's, for a streak). */
  onlyErrorClasses?: readonly string[];
}

/**
 * Give up: claimable rows that used up their attempts (or failed the same way
 * too often) become `failed`, their last error saying why. Returns how many.
 */
export async function giveUpRows(db: Db, rule: GiveUpRule): Promise<number> {
  const which = rule.minAttempts !== undefined ? sql`li.attempts >= ${rule.minAttempts}` : sql`li.same_error_count >= ${rule.minSameErrors ?? 2147483647}`;
  const why =
    rule.minAttempts !== undefined
      ? sql`'out of attempts (' || li.attempts || '): ' || coalesce(li.last_error, 'no reason recorded')`
      : sql`'failed ' || li.same_error_count || ' times in a row: ' || coalesce(li.last_error, '')`;
  return moveRows(
    db,
    sql`${claimableWhere('li')} AND ${which} AND ${rule.country === undefined ? sql`true` : sql`li.country = ${rule.country}`}
        AND (li.last_error_class IS NULL OR li.last_error_class <> ALL(${[...rule.exceptErrorClasses]}::text[]))
        AND ${rule.onlyErrorClasses === undefined ? sql`true` : sql`li.last_error_class = ANY(${[...rule.onlyErrorClasses]}::text[])`}`,
    sql`state = 'failed', last_error = ${why}`,
  );
}
