import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { relistColumns, runTransition } from './claimable-rows.ts';

/**
 * The shape shared by the operations on rows no worker holds (park, unpark,
 * retry, refresh, rework, send back, wake, give up): one statement that locks
 * the rows matching `where` (over alias `li`) in id order, applies `set`, and
 * keeps claimable_rows right. Not exported from the queue's API on purpose:
 * each named operation is its own file.
 */
export async function moveRows(db: Db, where: RawBuilder<unknown>, set: RawBuilder<unknown>): Promise<number> {
  return runTransition(db, {
    mayBeListed: true,
    candidates: sql`SELECT li.id, li.country, li.stage, li.store_host FROM live_images li WHERE ${where}`,
    update: sql`
    UPDATE live_images li SET ${set}, updated_at = now() FROM locked WHERE li.id = locked.id
    RETURNING ${relistColumns('li')}`,
  });
}

/** `true`, or the column of `alias` equal to `value` when it is given. */
export function optionalFilter(column: string, value: string | number | undefined, alias = 'li'): RawBuilder<unknown> {
  return value === undefined ? sql`true` : sql`${sql.ref(`${alias}.${column}`)} = ${value}`;
}
