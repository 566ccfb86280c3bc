import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

export interface RefreshFilter {
  country: string;
  olderThanDays: number;
  limit?: number;
}

/**
 * Refresh: live rows whose original was downloaded more than `olderThanDays`
 * ago (or never recorded) go back to download, oldest first, while they stay
 * live (`live_data` keeps serving; claimed after new rows). lis_downloadd asks
 * with If-None-Match / If-Modified-Since: a 304 or the same bytes send the
 * row straight back to live, touching neither its data nor its files.
 * `store_host` is cleared because the download stage claims only such rows.
 * Rows of a disabled datasource are left as they are: its source is not to be
 * asked (refreshed, they were downloaded at once from the feed an operator or
 * the manager had stopped); a refresh after it is enabled takes them.
 */
export async function refreshRows(db: Db, options: RefreshFilter): Promise<number> {
  return moveRows(
    db,
    sql`li.id = ANY(ARRAY(
          SELECT r.id FROM live_images r
           WHERE ${due(options)} AND NOT ${ofDisabledDatasource()}
           ORDER BY r.downloaded_at NULLS FIRST, r.id
           LIMIT ${options.limit ?? 1_000_000_000}))
        AND li.stage = 'live' AND li.state = 'done' AND li.locked_by IS NULL`,
    sql`stage = 'download', state = 'waiting', store_host = '', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now(),
        last_error = NULL, last_error_class = NULL`,
  );
}

/** How many rows a refresh with these options leaves alone because their datasource is disabled. A read, no move. */
export async function refreshHeldByDisabled(db: Db, options: RefreshFilter): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM live_images r WHERE ${due(options)} AND ${ofDisabledDatasource()}`.execute(db);
  return rows[0].n;
}

/** Row `r` is live, held by nobody, and its original older than the refresh's age. */
function due(options: RefreshFilter): RawBuilder<boolean> {
  return sql<boolean>`r.country = ${options.country} AND r.stage = 'live' AND r.state = 'done' AND r.locked_by IS NULL
    AND (r.downloaded_at IS NULL OR r.downloaded_at < now() - make_interval(days => ${options.olderThanDays}))`;
}

/** Row `r`'s datasource is disabled. */
function ofDisabledDatasource(): RawBuilder<boolean> {
  return sql<boolean>`EXISTS (SELECT 1 FROM datasources d WHERE d.country = r.country AND d.datasource_id = r.datasource_id AND NOT d.enabled)`;
}
