import { sql, type Kysely } from 'kysely';

/**
 * lis_thumbnaild: a perceptual hash per image (for the `duplicate` class, looked
 * up per datasource) and the process details of a datasource as the daemon
 * reads them.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    -- 64-bit difference hash (dHash) of the picture, as a signed bigint.
    ALTER TABLE live_images ADD COLUMN perceptual_hash bigint;
    CREATE INDEX live_images_perceptual_hash ON live_images (country, datasource_id, perceptual_hash)
      WHERE perceptual_hash IS NOT NULL;

    -- One row always, NULLs where the datasource (or its row) sets nothing: the config's defaults apply.
    CREATE FUNCTION lis_datasource_process_details(p_country text, p_datasource_id integer)
      RETURNS TABLE (sharpen text, gamma real, quality smallint, enabled boolean)
      LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT d.sharpen, d.gamma, d.quality, coalesce(d.enabled, true)
          FROM (SELECT 1) one
          LEFT JOIN datasources d ON d.country = p_country AND d.datasource_id = p_datasource_id
      $$;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP FUNCTION lis_datasource_process_details(text, integer);
    DROP INDEX live_images_perceptual_hash;
    ALTER TABLE live_images DROP COLUMN perceptual_hash;
  `.execute(db);
}
