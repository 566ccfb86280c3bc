import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { runPrepared } from '../db/prepared-query.ts';
import type { ClaimedRow } from './claim-chunk.ts';
import type { WorkStage } from './stages.ts';

/**
 * Claims one named row for this worker, whatever its place in claimable_rows:
 * lis_imaged working a row now because a frontend asks for it. Only a row
 * still waiting in `download` or `thumbnail`, unlocked, whose retry time has
 * come, and (past download) whose files are on `storeHost` ('' for shared
 * stores) is taken; its claimable_rows entries go in the same statement, so
 * no daemon claims it meanwhile. Returns null when it is not claimable (a
 * daemon holds it, it failed, it moved on). finishRows / failRows /
 * releaseRows end the claim as for a chunk.
 */
export async function claimRow(db: Db, id: string, workerId: string, storeHost: string): Promise<(ClaimedRow & { stage: WorkStage }) | null> {
  // Entries first, skipping one a chunk claim holds (as claimChunk takes its locks: entry, then row), so the two never deadlock.
  const rows = await runPrepared(
    db,
    sql<ClaimedRow & { stage: WorkStage }>`
    WITH unlisted AS (
           DELETE FROM claimable_rows
            WHERE ctid = ANY(ARRAY(
                    SELECT c.ctid FROM claimable_rows c JOIN live_images l ON l.id = c.id
                     WHERE l.id = ${id}::bigint AND ${claimable(storeHost)}
                       -- Every key column, both priorities: the claim index finds the entry without walking the backlog.
                       AND c.country = l.country AND c.stage = l.stage AND c.store_host = l.store_host AND c.priority IN (0, 1) AND c.id = l.id
                       FOR UPDATE OF c SKIP LOCKED))
           RETURNING id),
         claimed AS (
           UPDATE live_images li
              SET locked_by = ${workerId}, locked_at = now()
            WHERE li.id = ${id}::bigint AND ${claimable(storeHost, 'li')}
           RETURNING li.id, li.country, li.image_url, li.image_hash, li.datasource_id, li.image_data, li.human_classified,
                     li.image_class, li.attempts, li.store_host, li.stage)
    SELECT claimed.* FROM claimed`,
  );
  return rows[0] ?? null;
}

/** The row `alias` may be claimed now by a worker whose files are on `storeHost`. */
function claimable(storeHost: string, alias = 'l') {
  const col = (name: string) => sql.ref(`${alias}.${name}`);
  return sql`${col('state')} = 'waiting' AND ${col('locked_by')} IS NULL AND ${col('next_attempt_at')} <= now()
             AND (${col('stage')} = 'download' OR (${col('stage')} = 'thumbnail' AND (${storeHost} = '' OR ${col('store_host')} = ${storeHost})))`;
}
