import { sql, type Kysely } from 'kysely';

/**
 * The class of a row's same-error streak (`same_error_count` failures of it in a row), kept apart from the
 * last error shown. deferRows shows our own fault in last_error_class; failRows compared a new failure with
 * that, so each hiccup of ours started the source's streak again and bad_retry_jobs never parked a source
 * that always fails the same way. A streak's class was its row's last_error_class unless a deferral came
 * since (that class is lost: such a streak starts again at its next failure).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE live_images ADD COLUMN streak_class text`.execute(db);
  await sql`UPDATE live_images SET streak_class = last_error_class WHERE same_error_count > 0`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE live_images DROP COLUMN streak_class`.execute(db);
}
