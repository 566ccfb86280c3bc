import { sql, type Kysely } from 'kysely';

/**
 * lis_pusherd's push records. A record says a frontend has a row's files as
 * they were when pushed: `files_digest` is md5 of the row's
 * `image_data->'presets'` at that time, so a row thumbnailed anew (new files
 * under the same names) counts as missing again. `next_attempt_at` spaces out
 * backfill retries to a frontend that failed.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE frontend_pushes
      ADD COLUMN files_digest text,
      ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
      ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE frontend_pushes DROP COLUMN files_digest, DROP COLUMN next_attempt_at, DROP COLUMN updated_at;
  `.execute(db);
}
