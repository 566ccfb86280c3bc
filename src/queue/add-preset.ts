import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { runPrepared } from '../db/prepared-query.ts';
import type { ImageData } from '../store/image-data.ts';

/**
 * Adds (or replaces) one preset in a row's image_data (and, on a live row, in
 * the live_data the Interface answers with), and marks the row not
 * pushed to any frontend, so the pusher's backfill sends its files again: the
 * request came from a frontend that lacked one, and which one is not known.
 * Not a stage move: stage, state and lock are untouched (lis_imaged's one door).
 */
export async function addPreset(db: Db, id: string, preset: string, entry: ImageData['presets'][string], version: number): Promise<void> {
  // Prepared: a lis_imaged miss records its preset in its lock's transaction, and planning this cost more than running it.
  await runPrepared(
    db,
    sql`
    WITH row AS (
      UPDATE live_images
         SET image_data = CASE WHEN coalesce((image_data->>'version')::int, 1) = ${version}
                               THEN jsonb_set(image_data, ARRAY['presets', ${preset}]::text[], ${JSON.stringify(entry)}::jsonb, true)
                               ELSE image_data END,
             -- A live row serves the new preset at once: a frontend that lacks its file asks lis_imaged for it.
             live_data = CASE WHEN stage = 'live' AND live_data ? 'presets' AND coalesce((live_data->>'version')::int, 1) = ${version}
                              THEN jsonb_set(live_data, ARRAY['presets', ${preset}]::text[], ${JSON.stringify(entry)}::jsonb, true)
                              ELSE live_data END,
             updated_at = now()
       WHERE id = ${id}::bigint AND image_data ? 'presets'
      RETURNING country, image_hash)
    UPDATE frontend_pushes fp SET pushed_at = NULL, next_attempt_at = now(), updated_at = now()
      FROM row WHERE fp.country = row.country AND fp.image_hash = row.image_hash`,
  );
}
