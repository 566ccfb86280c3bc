import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { runPrepared } from '../db/prepared-query.ts';
import type { LiveImage } from '../db/schema.ts';
import type { WorkStage } from './stages.ts';

export interface ClaimRequest {
  country: string;
  stage: WorkStage;
  workerId: string;
  /** Rows whose files this worker can read: its host's, or '' for download and for shared stores. */
  storeHost: string;
  limit: number;
  /** Only rows with a larger id; see ClaimCursor. */
  afterId: string;
}

export type ClaimedRow = Pick<
  LiveImage,
  'id' | 'country' | 'image_url' | 'image_hash' | 'datasource_id' | 'image_data' | 'human_classified' | 'image_class' | 'attempts' | 'store_host'
>;

/**
 * Locks up to `limit` claimable rows for one worker in one statement.
 *
 * The rows come from claimable_rows, walked in id order from `afterId`:
 * entries another claim holds are skipped (SKIP LOCKED), the ones taken are
 * deleted, and their rows locked in live_images, where only a row still
 * waiting, unlocked and in this stage is taken. An entry that no longer
 * matches its row is dropped all the same, and the claim goes on past it.
 * No index of live_images covers the lock columns, so the lock is a HOT update.
 */
export async function claimChunk(db: Db, request: ClaimRequest): Promise<ClaimedRow[]> {
  const claimed: ClaimedRow[] = [];
  let afterId = request.afterId;
  for (;;) {
    const { picked, lastPickedId, rows } = await claimOnce(db, { ...request, afterId, limit: request.limit - claimed.length });
    claimed.push(...rows);
    // Fewer rows than entries: some entries were stale. They are deleted now, so this ends.
    if (rows.length === picked || claimed.length >= request.limit) break;
    afterId = lastPickedId;
  }
  // RETURNING gives no order; the worker works (and the cursor moves) in id order.
  return claimed.sort((a, b) => compareIds(a.id, b.id));
}

async function claimOnce(db: Db, request: ClaimRequest): Promise<{ picked: number; lastPickedId: string; rows: ClaimedRow[] }> {
  const rows = await runPrepared(db, sql<Partial<ClaimedRow> & { picked: number; last_id: string | null }>`
    WITH picked AS (
           DELETE FROM claimable_rows
            WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM claimable_rows
                     WHERE country = ${request.country} AND stage = ${request.stage} AND store_host = ${request.storeHost}
                       AND id > ${request.afterId}::bigint AND next_attempt_at <= now()
                     ORDER BY id
                     LIMIT ${request.limit}
                       FOR UPDATE SKIP LOCKED))
           RETURNING id),
         claimed AS (
           UPDATE live_images li
              SET locked_by = ${request.workerId}, locked_at = now()
             FROM picked
            WHERE li.id = picked.id AND li.country = ${request.country} AND li.stage = ${request.stage}
              AND li.store_host = ${request.storeHost} AND li.state = 'waiting' AND li.locked_by IS NULL
           RETURNING li.id, li.country, li.image_url, li.image_hash, li.datasource_id, li.image_data, li.human_classified,
                     li.image_class, li.attempts, li.store_host)
    SELECT p.picked, p.last_id, c.* FROM (SELECT count(*)::int AS picked, max(id)::text AS last_id FROM picked) p LEFT JOIN claimed c ON true`);
  // The LEFT JOIN gives one row even when nothing was claimed, to carry the counts.
  const [{ picked, last_id: lastPickedId }] = rows;
  return {
    picked,
    lastPickedId: lastPickedId ?? request.afterId,
    rows: rows.filter((r) => r.id != null).map(({ picked: _picked, last_id: _lastId, ...row }) => row as ClaimedRow),
  };
}

/** Orders bigint ids as pg returns them (decimal strings). */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
