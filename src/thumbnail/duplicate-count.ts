import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';

/** One picture within one datasource. */
export interface DuplicateKey {
  country: string;
  datasourceId: number;
  perceptualHash: string;
}

export interface SameHashQuery extends DuplicateKey {
  /** Rows being worked now (their stored hash is stale or missing): counted by the caller instead. */
  excludeIds: string[];
  /** Counting stops here: enough to know the rule holds, without walking a logo's 100,000 rows. */
  limit: number;
}

/** Rows of the datasource already recorded with this perceptual hash (index live_images_perceptual_hash). */
export async function countSameHash(db: Db, q: SameHashQuery): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    SELECT count(*) AS n FROM (
      SELECT 1 FROM live_images
       WHERE country = ${q.country} AND datasource_id = ${q.datasourceId} AND perceptual_hash = ${q.perceptualHash}::bigint
         AND id <> ALL(${q.excludeIds}::bigint[])
       LIMIT ${q.limit}) s`.execute(db);
  return Number(rows[0].n);
}

/** Marking the earlier rows is a write to live_images, so it lives in the queue. */
export { markEarlierDuplicates } from '../queue/classify-rows.ts';
