import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';

/** The classes a person may give an image (`lis image classify`). */
export const IMAGE_CLASSES = ['photo', 'placeholder', 'tiny', 'duplicate'] as const;
export type ImageClass = (typeof IMAGE_CLASSES)[number];

/**
 * A human's word: sets `image_class` and `human_classified`, which no stage
 * overwrites; `null` hands the image back to the automatic rules (its class
 * is decided again at its next thumbnailing). Not a queue transition: the
 * row's stage and state are untouched. Returns false for an unknown image.
 */
export async function classifyByHuman(db: Db, country: string, imageHash: string, imageClass: ImageClass | null): Promise<boolean> {
  const result = await sql`
    UPDATE live_images SET human_classified = ${imageClass !== null},
           image_class = coalesce(${imageClass}::text, image_class), updated_at = now()
     WHERE country = ${country} AND image_hash = ${imageHash}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

/**
 * Once a picture qualifies as a duplicate, the earlier rows with it (classed
 * `photo` before the count reached the threshold) become `duplicate` too, in
 * whatever stage they are; rows a person classified are left alone. Rows are
 * locked in id order (the queue's lock order). Returns how many changed.
 */
export async function markEarlierDuplicates(db: Db, q: { country: string; datasourceId: number; perceptualHash: string }): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    WITH locked AS MATERIALIZED (
           SELECT id FROM live_images
            WHERE country = ${q.country} AND datasource_id = ${q.datasourceId} AND perceptual_hash = ${q.perceptualHash}::bigint
              AND image_class = 'photo' AND NOT human_classified
            ORDER BY id FOR NO KEY UPDATE),
         updated AS (UPDATE live_images li SET image_class = 'duplicate', updated_at = now() FROM locked WHERE li.id = locked.id RETURNING li.id)
    SELECT count(*)::int AS n FROM updated`.execute(db);
  return rows[0].n;
}
