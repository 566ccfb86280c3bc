import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

/**
 * Refresh: live rows whose original was downloaded more than `olderThanDays`
 * ago (or never recorded) go back to download, oldest first, while they stay
 * live (`live_data` keeps serving; claimed after new rows). lis_downloadd asks
 * with If-None-Match / If-Modified-Since: a 304 or the same bytes send the
 * row straight back to live, touching neither its data nor its files.
 * `store_host` is cleared because the download stage claims only such rows.
 */
export async function refreshRows(db: Db, options: { country: string; olderThanDays: number; limit?: number }): Promise<number> {
  return moveRows(
    db,
    sql`li.id = ANY(ARRAY(
          SELECT r.id FROM live_images r
           WHERE r.country = ${options.country} AND r.stage = 'live' AND r.state = 'done' AND r.locked_by IS NULL
             AND (r.downloaded_at IS NULL OR r.downloaded_at < now() - make_interval(days => ${options.olderThanDays}))
           ORDER BY r.downloaded_at NULLS FIRST, r.id
           LIMIT ${options.limit ?? 1_000_000_000}))
        AND li.stage = 'live' AND li.state = 'done' AND li.locked_by IS NULL`,
    sql`stage = 'download', state = 'waiting', store_host = '', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now(),
        last_error = NULL, last_error_class = NULL`,
  );
}
