import { sql, type Kysely } from 'kysely';

/**
 * Backfill's claims with shared stores. Every pushing host can send every row then, so each host's backfill
 * sent a new frontend the whole site: N hosts, N copies. A host's backfill now claims the rows of each chunk
 * in their push record (`claimed_by`: the token of the pass, an advisory lock its session holds) and the
 * others pass them by while that session lives. The index finds a frontend's claims without reading its records.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE frontend_pushes ADD COLUMN claimed_by integer`.execute(db);
  await sql`CREATE INDEX frontend_pushes_claimed ON frontend_pushes (frontend, claimed_by) WHERE claimed_by IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE frontend_pushes DROP COLUMN claimed_by`.execute(db);
}
