import { sql, type Kysely } from 'kysely';

/**
 * The table and the intake's parser agree on what a valid URL is: a URL's
 * scheme is case-insensitive (RFC 3986), so `HTTP://host/x.jpg` is accepted by
 * both. Before, the parser took it and the CHECK refused it, and the whole batch
 * of up to 5,000 URLs was lost. Added NOT VALID and validated after, so the
 * table is only scanned, never locked against writes for the scan. Still no regular
 * expression: PostgreSQL checks every CHECK on every UPDATE.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images DROP CONSTRAINT live_images_image_url_check;
    ALTER TABLE live_images ADD CONSTRAINT live_images_image_url_check CHECK (lower(split_part(image_url, '://', 1)) IN ('http', 'https') AND strpos(image_url, '://') > 0) NOT VALID;
    ALTER TABLE live_images VALIDATE CONSTRAINT live_images_image_url_check;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images DROP CONSTRAINT live_images_image_url_check;
    ALTER TABLE live_images ADD CONSTRAINT live_images_image_url_check CHECK (starts_with(image_url, 'http://') OR starts_with(image_url, 'https://')) NOT VALID;
  `.execute(db);
}
