import { sql, type Kysely } from 'kysely';

/**
 * Which stores each worker uses (a digest of each store's marker, `.imagesys-store`, per kind), so that a second
 * machine started under a host name another machine already runs as (a config copied with its `host`) is refused
 * at start: rows name their host in store_host, and the two would take each other's rows and find their files
 * missing, over and over, with no error but the churn.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE workers ADD COLUMN stores jsonb`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE workers DROP COLUMN stores`.execute(db);
}
