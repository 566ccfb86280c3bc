import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { runPrepared } from '../db/prepared-query.ts';
import type { LiveImage } from '../db/schema.ts';
import { priorityOf } from './claimable-rows.ts';
import type { WorkStage } from './stages.ts';

export interface ClaimRequest {
  country: string;
  stage: WorkStage;
  workerId: string;
  /** Rows whose files this worker can read: its host's, or '' for download and for shared stores. */
  storeHost: string;
  limit: number;
  /** Only new rows (priority 0) with a larger id; see ClaimCursor. */
  afterId: string;
  /** Only reworks (priority 1) with a larger id; default '0'. */
  afterReworkId?: string;
}

export type ClaimedRow = Pick<
  LiveImage,
  'id' | 'country' | 'image_url' | 'image_hash' | 'datasource_id' | 'image_data' | 'human_classified' | 'image_class' | 'attempts' | 'store_host'
> & {
  /** 0: a new row; 1: a rework of a live row (it keeps serving live_data meanwhile). */
  priority: number;
};

/**
 * Locks up to `limit` claimable rows for one worker in one statement.
 *
 * The rows come from claimable_rows, new rows (priority 0) first, each
 * priority walked in id order from its own cursor: a backlog of reworks
 * fills only what new rows leave of a chunk. Entries another claim holds are
 * skipped (SKIP LOCKED), the ones taken are deleted, and their rows locked in
 * live_images in id order (the lock order of claimable-rows.ts), where only a
 * row still claimable and in this stage is taken. An entry that no longer
 * matches its row is dropped all the same, and the claim goes on past it.
 * No index of live_images covers the lock columns, so the lock is a HOT update.
 */
export async function claimChunk(db: Db, request: ClaimRequest): Promise<ClaimedRow[]> {
  const claimed: ClaimedRow[] = [];
  let after = [request.afterId, request.afterReworkId ?? '0'] as [string, string];
  for (;;) {
    const { picked, lastPicked, rows } = await claimOnce(db, request, after, request.limit - claimed.length);
    claimed.push(...rows);
    // Fewer rows than entries: some entries were stale. They are deleted now, so this ends.
    if (rows.length === picked || claimed.length >= request.limit) break;
    after = lastPicked;
  }
  // RETURNING gives no order; the worker works (and the cursor moves) in id order, new rows first.
  return claimed.sort((a, b) => a.priority - b.priority || compareIds(a.id, b.id));
}

async function claimOnce(
  db: Db,
  request: ClaimRequest,
  after: [string, string],
  limit: number,
): Promise<{ picked: number; lastPicked: [string, string]; rows: ClaimedRow[] }> {
  const entries = (priority: number, afterId: string, max: RawBuilder<unknown>) => sql`
           DELETE FROM claimable_rows
            WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM claimable_rows
                     WHERE country = ${request.country} AND stage = ${request.stage} AND store_host = ${request.storeHost}
                       AND priority = ${sql.lit(priority)} AND id > ${afterId}::bigint AND next_attempt_at <= now()
                     ORDER BY id
                     LIMIT ${max}
                       FOR UPDATE SKIP LOCKED))
           RETURNING id, priority`;
  const rows = await runPrepared(
    db,
    sql<Partial<ClaimedRow> & { picked: number; last_new: string | null; last_rework: string | null }>`
    WITH new_rows AS (${entries(0, after[0], sql`${limit}::int`)}),
         reworks AS (${entries(1, after[1], sql`(${limit}::int - (SELECT count(*) FROM new_rows))`)}),
         picked AS (SELECT id, priority FROM new_rows UNION ALL SELECT id, priority FROM reworks),
         locked AS MATERIALIZED (
           SELECT li.id FROM live_images li
            WHERE li.id = ANY(ARRAY(SELECT id FROM picked)) AND li.country = ${request.country} AND li.stage = ${request.stage}
              AND li.store_host = ${request.storeHost} AND li.state = 'waiting' AND li.locked_by IS NULL
            ORDER BY li.id
              FOR NO KEY UPDATE),
         claimed AS (
           UPDATE live_images li
              SET locked_by = ${request.workerId}, locked_at = now()
             FROM locked
            WHERE li.id = locked.id
           RETURNING li.id, li.country, li.image_url, li.image_hash, li.datasource_id, li.image_data, li.human_classified,
                     li.image_class, li.attempts, li.store_host, ${priorityOf('li')} AS priority)
    SELECT p.picked, p.last_new, p.last_rework, c.*
      FROM (SELECT count(*)::int AS picked, max(id) FILTER (WHERE priority = 0)::text AS last_new,
                   max(id) FILTER (WHERE priority = 1)::text AS last_rework FROM picked) p
      LEFT JOIN claimed c ON true`,
  );
  // The LEFT JOIN gives one row even when nothing was claimed, to carry the counts.
  const [{ picked, last_new: lastNew, last_rework: lastRework }] = rows;
  return {
    picked,
    lastPicked: [lastNew ?? after[0], lastRework ?? after[1]],
    rows: rows.filter((r) => r.id != null).map(({ picked: _picked, last_new: _n, last_rework: _r, ...row }) => row as ClaimedRow),
  };
}

/** Orders bigint ids as pg returns them (decimal strings). */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
