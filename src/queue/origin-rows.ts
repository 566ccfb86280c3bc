import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { FailureClass } from '../failure/failure-reasons.ts';
import { enqueueUnseenRows, UNSEEN } from './enqueue-rows.ts';

/**
 * The failure classes that say an origin does not have a key, for good: a 404 or 410 (an S3 NoSuchKey and a
 * missing file under an origin folder are recorded as http_404 too). Transient ones (timeouts, 5xx) are not.
 */
export const KEY_NOT_AT_ORIGIN: readonly FailureClass[] = ['http_404', 'http_410'];

/**
 * lis_imaged's row for an origin key, queued like any new URL but UNSEEN
 * (`enqueueUnseenRows`, the one insert of the queue): the mark, in the row,
 * says that only a request wanted it. Returns its id when this call inserted
 * it, null when it was there already (the ETL's, or another request's, left
 * untouched).
 */
export async function insertOriginRow(db: Db, country: string, datasourceId: number, url: string): Promise<string | null> {
  const [id] = await enqueueUnseenRows(db, country, [{ datasourceId, url }]);
  return id ?? null;
}

/**
 * A missed origin row: only a request wanted it (UNSEEN: no listing named its
 * URL since), and its download failed for good because the origin has no such
 * key; held by nobody. Never downloaded (downloaded_at IS NULL): so it has no
 * original, no thumbnails and no frontend_pushes, and being failed, no
 * claimable_rows entry: deleting the row leaves nothing behind. (A row once
 * downloaded, sent back to download and then missed, is kept for the purge,
 * which also deletes its files.)
 */
const missed = sql`stage = 'download' AND state = 'failed' AND locked_by IS NULL
  AND last_error_class = ANY(${[...KEY_NOT_AT_ORIGIN]}::text[]) AND downloaded_at IS NULL AND ${UNSEEN}`;

/**
 * Deletes the row `insertOriginRow` gave this request, when its download
 * failed because the origin has no such key, so that a request for a key the
 * origin lacks leaves nothing behind at once. Only while it is missed (above):
 * a row the ETL or the Interface enqueued meanwhile is kept. One statement; a
 * concurrent change of the row is waited for and the conditions read again.
 * Returns whether it was deleted.
 */
export async function deleteMissedOriginRow(db: Db, id: string): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    DELETE FROM live_images WHERE id = ${id}::bigint AND ${missed}
    RETURNING id::text AS id`.execute(db);
  return rows.length > 0;
}

/** Rows deleted per statement by `deleteMissedOriginRows`: its locks are held briefly. */
const BATCH = 1000;

/**
 * Every missed origin row (of one country, or all), whoever failed it: the
 * rows a lis_downloadd failed after the request that made them had given up
 * (or after lis_imaged stopped), which nobody else looks at again. lis_managerd's
 * `missed_origin_rows` check. In batches, each locking its rows in id order (the
 * queue's lock order) and skipping those another statement holds (the next run
 * takes them); the lock re-reads the conditions. Returns how many were deleted.
 */
export async function deleteMissedOriginRows(db: Db, country?: string): Promise<number> {
  const inCountry = country === undefined ? sql`true` : sql`country = ${country}`;
  let deleted = 0;
  for (;;) {
    const { rows } = await sql<{ n: number }>`
      WITH doomed AS MATERIALIZED (
             SELECT id FROM live_images WHERE ${missed} AND ${inCountry} ORDER BY id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED),
           gone AS (DELETE FROM live_images li USING doomed WHERE li.id = doomed.id RETURNING li.id)
      SELECT count(*)::int AS n FROM gone`.execute(db);
    deleted += rows[0].n;
    if (rows[0].n < BATCH) return deleted;
  }
}
