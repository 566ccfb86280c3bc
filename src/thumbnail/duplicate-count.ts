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

/**
 * Once a picture qualifies as a duplicate, the earlier rows with it (classed
 * `photo` before the count reached the threshold) become `duplicate` too, in
 * whatever stage they are; rows a person classified are left alone. Returns
 * how many changed.
 */
export async function markEarlierDuplicates(db: Db, q: DuplicateKey): Promise<number> {
  const result = await sql`
    UPDATE live_images SET image_class = 'duplicate', updated_at = now()
     WHERE country = ${q.country} AND datasource_id = ${q.datasourceId} AND perceptual_hash = ${q.perceptualHash}::bigint
       AND image_class = 'photo' AND NOT human_classified`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
