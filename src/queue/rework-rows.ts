import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows, optionalFilter } from './move-rows.ts';

export interface ReworkFilter {
  /** Default: every country. */
  country?: string;
  datasourceId?: number;
  /** Only rows whose thumbnails lack this preset (a preset added to the config). */
  missingPreset?: string;
  /** Only these rows (fs_check's re-push of rows a frontend lacks). */
  ids?: string[];
  limit?: number;
}

/**
 * Rework: live rows go back to `thumbnail` (`lis rethumbnail`: changed process
 * details or a new preset) or to `push` (a frontend lacks a file) while they
 * stay live: `live_data` keeps serving the old version until the new one is
 * on every enabled frontend (finishRows). Claimed after new rows (priority 1).
 * Returns how many.
 */
export async function reworkRows(db: Db, to: 'thumbnail' | 'push', filter: ReworkFilter): Promise<number> {
  return moveRows(
    db,
    sql`li.id = ANY(ARRAY(
          SELECT r.id FROM live_images r
           WHERE ${optionalFilter('country', filter.country, 'r')} AND r.stage = 'live' AND r.state = 'done' AND r.locked_by IS NULL
             AND ${optionalFilter('datasource_id', filter.datasourceId, 'r')}
             AND ${filter.missingPreset === undefined ? sql`true` : sql`NOT coalesce(r.image_data->'presets' ? ${filter.missingPreset}, false)`}
             AND ${filter.ids === undefined ? sql`true` : sql`r.id = ANY(${filter.ids}::bigint[])`}
           ORDER BY r.id LIMIT ${filter.limit ?? 1_000_000_000}))
        AND li.stage = 'live' AND li.state = 'done' AND li.locked_by IS NULL`,
    sql`stage = ${to}, state = 'waiting', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now(), last_error = NULL, last_error_class = NULL`,
  );
}
