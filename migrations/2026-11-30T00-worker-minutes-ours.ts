import { sql, type Kysely } from 'kysely';

/**
 * Rows given back for our own fault, per worker and minute, of the classes no other alert covers (a bug,
 * a lost original, files gone from the store: see ownedByStageErrorRate): the stage's error-rate alert
 * counts them beside the source's failures, which `failed` holds.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE worker_minutes ADD COLUMN ours integer NOT NULL DEFAULT 0`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE worker_minutes DROP COLUMN ours`.execute(db);
}
