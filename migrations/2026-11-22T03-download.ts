import { sql, type Kysely } from 'kysely';

/**
 * What lis_downloadd learns about an original. No index on content_hash yet:
 * whoever groups identical images adds one (every index makes the finish
 * updates dearer).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images
      ADD COLUMN content_hash    text,
      ADD COLUMN etag            text,
      ADD COLUMN last_modified   text,
      ADD COLUMN downloaded_at   timestamptz,
      ADD COLUMN original_bytes  integer,
      ADD COLUMN original_format text;
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE live_images
      DROP COLUMN content_hash, DROP COLUMN etag, DROP COLUMN last_modified,
      DROP COLUMN downloaded_at, DROP COLUMN original_bytes, DROP COLUMN original_format;
  `.execute(db);
}
