import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows, optionalFilter } from './move-rows.ts';

/** A datasource's process details (src/thumbnail/process-details.ts), as image_data.details records them. */
export interface Details {
  sharpen: string;
  gamma: number;
  quality: number;
}

export interface ReworkFilter {
  /** Default: every country. */
  country?: string;
  datasourceId?: number;
  /** Only rows whose thumbnails lack this preset (a preset added to the config). */
  missingPreset?: string;
  /**
   * Only rows not made with their datasource's process details now in force (image_data.details): its own, and
   * `defaults` (the config's thumbnail.defaults) where it sets none. Rows made before the details were recorded
   * count as not made with them.
   */
  staleDetails?: { defaults: Details };
  /** Only these rows (fs_check's re-push of rows a frontend lacks). */
  ids?: string[];
  /**
   * Rows waiting in `push` too (not only live ones): their files were made before the change that calls for the
   * rework (`lis rethumbnail` after `lis datasource set` or a new preset), and pushed as they are they went live
   * with the old settings, which a rework of live rows run before it could not catch.
   */
  waitingInPush?: boolean;
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
  const movable = (r: string) =>
    filter.waitingInPush
      ? sql`((${sql.ref(`${r}.stage`)} = 'live' AND ${sql.ref(`${r}.state`)} = 'done') OR (${sql.ref(`${r}.stage`)} = 'push' AND ${sql.ref(`${r}.state`)} = 'waiting'))
            AND ${sql.ref(`${r}.locked_by`)} IS NULL`
      : sql`${sql.ref(`${r}.stage`)} = 'live' AND ${sql.ref(`${r}.state`)} = 'done' AND ${sql.ref(`${r}.locked_by`)} IS NULL`;
  return moveRows(
    db,
    sql`li.id = ANY(ARRAY(
          SELECT r.id FROM live_images r
           WHERE ${optionalFilter('country', filter.country, 'r')} AND ${movable('r')}
             AND ${matching('r', filter)}
             AND ${filter.ids === undefined ? sql`true` : sql`r.id = ANY(${filter.ids}::bigint[])`}
           ORDER BY r.id LIMIT ${filter.limit ?? 1_000_000_000}))
        AND ${movable('li')}`,
    sql`stage = ${to}, state = 'waiting', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now(), last_error = NULL, last_error_class = NULL`,
  );
}

/**
 * How many rows a rework with this filter could not take because a worker holds them in `thumbnail` or `push`
 * right now: made (or being made) before the change, they may go live with the old settings. A read, no move.
 */
export async function heldFromRework(db: Db, filter: Pick<ReworkFilter, 'country' | 'datasourceId' | 'missingPreset' | 'staleDetails'>): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM live_images r
     WHERE ${optionalFilter('country', filter.country, 'r')} AND r.stage IN ('thumbnail', 'push') AND r.locked_by IS NOT NULL
       AND ${matching('r', filter)}`.execute(db);
  return rows[0].n;
}

/** The filter's datasource, preset and process details over row `r`. */
function matching(r: string, filter: Pick<ReworkFilter, 'datasourceId' | 'missingPreset' | 'staleDetails'>): RawBuilder<unknown> {
  const imageData = sql.ref(`${r}.image_data`);
  const inForce = (d: Details) =>
    // As detailsInForce: a datasource's own value over the default, gamma (real) to three decimals of its double.
    sql`(SELECT jsonb_build_object('sharpen', coalesce(p.sharpen, ${d.sharpen}::text),
                                   'gamma', coalesce(round(p.gamma::float8::numeric, 3), ${d.gamma}::numeric),
                                   'quality', coalesce(p.quality::int, ${d.quality}::int))
           FROM lis_datasource_process_details(${sql.ref(`${r}.country`)}, ${sql.ref(`${r}.datasource_id`)}) p)`;
  return sql`${optionalFilter('datasource_id', filter.datasourceId, r)}
    AND ${filter.missingPreset === undefined ? sql`true` : sql`NOT coalesce(${imageData}->'presets' ? ${filter.missingPreset}, false)`}
    AND ${filter.staleDetails === undefined ? sql`true` : sql`${imageData}->'details' IS DISTINCT FROM ${inForce(filter.staleDetails.defaults)}`}`;
}
