import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

/** The last_error_class of a row being purged: parked, so no daemon claims it, until its files are gone. */
export const PURGING = 'expired';

/**
 * Purge, step 1: rows the ETL no longer lists are marked (parked as
 * `expired`) before their files go, so that a run cut short finds them again.
 * Rows a worker holds are left for the next run, and so are rows the ETL saw
 * again since the caller picked them (both checked under the row lock).
 * Returns how many; the caller reads back which (markedForPurge).
 */
export async function markRowsForPurge(db: Db, ids: string[], purgeAfterDays: number): Promise<number> {
  if (ids.length === 0) return 0;
  return moveRows(
    db,
    sql`li.id = ANY(${ids}::bigint[]) AND li.locked_by IS NULL
        AND (li.last_seen < now() - make_interval(secs => ${purgeAfterDays * 86400}) OR (li.state = 'parked' AND li.last_error_class = ${PURGING}))`,
    sql`state = 'parked', last_error_class = ${PURGING}, last_error = 'expired: not seen by the ETL for ' || ${purgeAfterDays}::text || ' days'`,
  );
}

/**
 * Purge, step 2, once every frontend and store lost the files: the marked
 * rows and their push records are deleted, in one transaction (push records
 * first, then the rows in id order; parked rows have no claim entry). Returns how many rows.
 */
export async function deletePurgedRows(db: Db, country: string, ids: string[], hashes: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return db.transaction().execute(async (trx) => {
    await sql`DELETE FROM frontend_pushes WHERE country = ${country} AND image_hash = ANY(${hashes}::text[])`.execute(trx);
    const { rows } = await sql<{ n: number }>`
      WITH locked AS MATERIALIZED (
             SELECT id FROM live_images WHERE id = ANY(${ids}::bigint[]) AND state = 'parked' AND last_error_class = ${PURGING}
              ORDER BY id FOR UPDATE),
           deleted AS (DELETE FROM live_images li USING locked WHERE li.id = locked.id RETURNING li.id)
      SELECT count(*)::int AS n FROM deleted`.execute(trx);
    return rows[0].n;
  });
}
