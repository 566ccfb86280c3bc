import { sql, type Kysely } from 'kysely';

/**
 * lis_imaged's origins name rows by their source's URL: `s3://bucket/key`
 * (read through the S3 API with the bucket's configured credentials) and
 * `file:///...` below a configured origin folder. The ETL may enqueue s3://
 * URLs too. The check on image_url widens to those schemes, in any case (still no regular
 * expression: PostgreSQL checks every CHECK on every UPDATE, see claimable-rows).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images DROP CONSTRAINT live_images_image_url_check;
    ALTER TABLE live_images ADD CONSTRAINT live_images_image_url_check CHECK (lower(split_part(image_url, '://', 1)) IN ('http', 'https', 's3', 'file') AND strpos(image_url, '://') > 0) NOT VALID;
    ALTER TABLE live_images VALIDATE CONSTRAINT live_images_image_url_check;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images DROP CONSTRAINT live_images_image_url_check;
    ALTER TABLE live_images ADD CONSTRAINT live_images_image_url_check CHECK (lower(split_part(image_url, '://', 1)) IN ('http', 'https') AND strpos(image_url, '://') > 0) NOT VALID;
  `.execute(db);
}
