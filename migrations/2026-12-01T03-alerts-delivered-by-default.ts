import { sql, type Kysely } from 'kysely';

/**
 * An alert recorded by a manager of a release before 2026-11-30T01-alerts-delivered counts as delivered. Those
 * managers claim and send an alert with one INSERT of key, kind and subject, and delete the row when no channel
 * took it, so a row of theirs is an alert sent; but with delivered_at null by default, a newer manager beside one
 * (a rolling upgrade) took each for a claim whose manager died before sending (null for over 5 minutes) and sent
 * the alert again, and never told its "recovered". This release's managers name delivered_at (null) in their claim.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE alerts_sent ALTER COLUMN delivered_at SET DEFAULT now()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE alerts_sent ALTER COLUMN delivered_at DROP DEFAULT`.execute(db);
}
