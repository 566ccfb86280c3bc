import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
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
  'id' | 'country' | 'image_url' | 'image_hash' | 'datasource_id' | 'image_data' | 'human_classified' | 'image_class' | 'attempts' | 'store_host' | 'last_seen'
>;

/**
 * Locks up to `limit` claimable rows for one worker in one statement.
 *
 * The inner SELECT walks the partial claim index from `afterId` and skips
 * rows another claim holds (SKIP LOCKED); a row another worker claimed and
 * committed meanwhile fails `locked_by IS NULL` on re-check, so no row ever
 * goes to two workers. `= ANY(ARRAY(...))` keeps the outer UPDATE on the
 * primary key, where `IN (subquery)` may turn into a join over the table.
 */
export async function claimChunk(db: Db, request: ClaimRequest): Promise<ClaimedRow[]> {
  const { rows } = await sql<ClaimedRow>`
    UPDATE live_images
       SET locked_by = ${request.workerId}, locked_at = now()
     WHERE id = ANY(ARRAY(
             SELECT id FROM live_images
              WHERE country = ${request.country} AND stage = ${request.stage} AND store_host = ${request.storeHost}
                AND state = 'waiting' AND locked_by IS NULL
                AND id > ${request.afterId}::bigint AND next_attempt_at <= now()
              ORDER BY id
              LIMIT ${request.limit}
                FOR UPDATE SKIP LOCKED))
    RETURNING id, country, image_url, image_hash, datasource_id, image_data, human_classified, image_class, attempts, store_host, last_seen`.execute(db);
  // RETURNING gives no order; the worker works (and the cursor moves) in id order.
  return rows.sort((a, b) => compareIds(a.id, b.id));
}

/** Orders bigint ids as pg returns them (decimal strings). */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
