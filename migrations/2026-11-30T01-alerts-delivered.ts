import { sql, type Kysely } from 'kysely';

/**
 * When each claimed alert was delivered (null: claimed, not yet delivered). A manager that dies between its
 * claim and the send leaves a claim without delivery: the next run sends that alert after a few minutes,
 * instead of taking the claim for a sent alert and holding it back for the whole dedupe window.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE alerts_sent ADD COLUMN delivered_at timestamptz`.execute(db);
  await sql`UPDATE alerts_sent SET delivered_at = sent_at`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE alerts_sent DROP COLUMN delivered_at`.execute(db);
}
