import { sql, type Kysely } from 'kysely';

/**
 * The release (package version) each worker runs, recorded as it registers: `lis worker-report` shows it, so that
 * an operator half-way through a rolling upgrade sees which daemons still run the older release. Null for a
 * worker of a release before this column.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE workers ADD COLUMN release text`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE workers DROP COLUMN release`.execute(db);
}
