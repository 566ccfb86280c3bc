import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

/** Wake: rows of stage push backing off for one of `errorClasses` (a frontend's trouble) are due now. */
export async function wakeRowsWaitingOnFrontends(db: Db, errorClasses: readonly string[]): Promise<number> {
  return moveRows(
    db,
    sql`li.stage = 'push' AND li.state = 'waiting' AND li.locked_by IS NULL AND li.last_error_class = ANY(${[...errorClasses]}::text[])
        AND li.next_attempt_at > now()`,
    sql`next_attempt_at = now()`,
  );
}
