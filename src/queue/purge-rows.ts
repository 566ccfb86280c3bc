import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';
import { parkedIfDisabled } from './park-rows.ts';

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

/** What the purge's last step did with a batch's marked rows. */
export interface PurgeEnd {
  /** Deleted, with their push records. */
  deleted: number;
  /** Listed again by the ETL since they were marked: queued anew in download (requeueRelisted). */
  requeued: number;
}

/**
 * Purge, step 2, once the files are gone (`deleteRest`: every enabled frontend and this host's stores lost them):
 * the marked rows and their push records are deleted, in one transaction (push records first, then the rows in id
 * order; parked rows have no claim entry). Except rows the ETL listed again since they were marked (last_seen
 * within `purgeAfterDays` again): the feed has the photo, so deleting the row lost it for good (the ETL's enqueue
 * of a known URL only refreshes last_seen, never inserts it again). Their files being partly removed, they start
 * again from download, as new jobs (requeueRelisted); that is done even when the rest waits for a frontend that
 * could not be cleaned (`deleteRest` false), so that the photo comes back at once.
 */
export async function endPurge(
  db: Db,
  country: string,
  rows: Array<{ id: string; image_hash: string }>,
  options: { purgeAfterDays: number; deleteRest: boolean },
): Promise<PurgeEnd> {
  if (rows.length === 0) return { deleted: 0, requeued: 0 };
  const seen = seenSince(options.purgeAfterDays);
  // Read before the transaction, so that push records are deleted before any row is locked (the lock order).
  const { rows: relisted } = await sql<{ id: string; image_hash: string }>`
    SELECT id, image_hash FROM live_images
     WHERE id = ANY(${rows.map((r) => r.id)}::bigint[]) AND state = 'parked' AND last_error_class = ${PURGING} AND ${seen}`.execute(db);
  const ending = options.deleteRest ? rows : relisted;
  if (ending.length === 0) return { deleted: 0, requeued: 0 };
  const ids = ending.map((r) => r.id);
  return db.transaction().execute(async (trx) => {
    // The rows' files are gone from the frontends, so are their push records: a row queued anew is pushed again whole.
    await sql`DELETE FROM frontend_pushes WHERE country = ${country} AND image_hash = ANY(${ending.map((r) => r.image_hash)}::text[])`.execute(trx);
    // Every row of the step locked at once, in id order: the requeue and the delete below then wait for nothing.
    await sql`SELECT id FROM live_images WHERE id = ANY(${ids}::bigint[]) AND state = 'parked' AND last_error_class = ${PURGING}
               ORDER BY id FOR UPDATE`.execute(trx);
    const requeued = await requeueRelisted(trx, ids, options.purgeAfterDays);
    if (!options.deleteRest) return { deleted: 0, requeued };
    const { rows: deleted } = await sql<{ n: number }>`
      WITH gone AS (DELETE FROM live_images WHERE id = ANY(${ids}::bigint[]) AND state = 'parked' AND last_error_class = ${PURGING} RETURNING id)
      SELECT count(*)::int AS n FROM gone`.execute(trx);
    return { deleted: deleted[0].n, requeued };
  });
}

/** SQL: the ETL listed the row (`alias`, or the statement's one table) within the last `purgeAfterDays`: not expired. */
function seenSince(purgeAfterDays: number, alias?: string): RawBuilder<boolean> {
  return sql<boolean>`${sql.ref(alias ? `${alias}.last_seen` : 'last_seen')} >= now() - make_interval(secs => ${purgeAfterDays * 86400})`;
}

/**
 * Rows marked for the purge and listed again by the ETL since: back to download as new jobs, uncharged (attempts
 * and streak reset), parked there if their datasource is disabled. Not served any more (`live_data` cleared: their
 * files were removed from the frontends), so the Interface answers them as not live, in stage download, until they
 * are live again; `image_data` is kept, so their next thumbnails get new names (a version more), as a rework's do.
 * The download's validators go (the original was removed: a full download, never a 304 back to live), and so does
 * `store_host` (the download stage claims only rows of no host).
 */
async function requeueRelisted(db: Db, ids: string[], purgeAfterDays: number): Promise<number> {
  return moveRows(
    db,
    sql`li.id = ANY(${ids}::bigint[]) AND li.state = 'parked' AND li.last_error_class = ${PURGING} AND li.locked_by IS NULL AND ${seenSince(purgeAfterDays, 'li')}`,
    sql`stage = 'download', state = ${parkedIfDisabled(sql`'waiting'`)}, live_data = NULL, store_host = '',
        content_hash = NULL, etag = NULL, last_modified = NULL, downloaded_at = NULL, original_bytes = NULL, original_format = NULL,
        attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now(), last_error = NULL, last_error_class = NULL`,
  );
}
