import { sql, type Kysely } from 'kysely';

/**
 * The failed rows, for what reads only them: lis_managerd's bad_retry_jobs (every 5 min) and
 * missed_origin_rows (every 5 min), `lis retry` and the reasons it lists when it matches nothing. Each
 * read the whole table: at 2.5M rows (10 GB at fillfactor 30), 3.5 s a statement, bad_retry_jobs two of
 * them (11 s), against a few ms through this. Its columns are those live_images_waiting already names
 * (country, and state in its predicate), so no update that was HOT stops being HOT. Building it reads the
 * table once while writes to live_images wait: 4.5 s at 2.5M rows.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE INDEX live_images_failed ON live_images (country, id) WHERE state = 'failed'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX live_images_failed`.execute(db);
}
