import { sql, type Kysely, type RawBuilder } from 'kysely';
import { runPrepared } from '../db/prepared-query.ts';
import type { Database } from '../db/schema.ts';

/**
 * claimable_rows lists the rows a worker may claim (see its migration). These
 * are the two ways queue code keeps it: a statement that unlocks rows lists
 * those it leaves claimable, and the manager lists any a hand-run UPDATE missed.
 */

/** What an unlocking UPDATE returns for `unlockAndRelist`, from the table or its alias `table`. */
export function relistColumns(table: string): RawBuilder<unknown> {
  const t = sql.table(table);
  return sql`${t}.id, ${t}.country, ${t}.stage, ${t}.store_host, ${t}.state, ${t}.locked_by, ${t}.next_attempt_at`;
}

/**
 * Runs `update`, an UPDATE of rows a worker held ending in `RETURNING
 * ${relistColumns(...)}`, and in the same statement lists the rows it left
 * claimable and wakes the daemons of their stage. Returns how many rows it
 * updated. Only for rows that were locked: the row trigger lists rows that
 * were not, and would list them twice.
 */
export async function unlockAndRelist(db: Kysely<Database>, update: RawBuilder<unknown>): Promise<number> {
  const [row] = await runPrepared(db, sql<{ updated: number }>`
    WITH updated AS (${update}),
         listed AS (
           INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at)
           SELECT id, country, stage, store_host, next_attempt_at FROM updated
            WHERE state = 'waiting' AND locked_by IS NULL AND stage <> 'live'
           RETURNING country, stage)
    SELECT (SELECT count(*) FROM updated)::int AS updated,
           (SELECT count(pg_notify('lis_work', country || ':' || stage)) FROM (SELECT DISTINCT country, stage FROM listed) s)::int AS woken`);
  return row.updated;
}

/**
 * Lists the claimable rows that have no entry: left by an UPDATE that unlocked
 * rows by hand (or with triggers off). Reads the backlog through
 * live_images_waiting, so it costs what the backlog is long. Returns how many
 * (with `dryRun`, how many it would list).
 */
export async function listMissingClaimable(db: Kysely<Database>, country?: string, options: { dryRun?: boolean } = {}): Promise<number> {
  const missing = sql`
    SELECT li.id, li.country, li.stage, li.store_host, li.next_attempt_at FROM live_images li
     WHERE li.state = 'waiting' AND li.locked_by IS NULL AND li.stage <> 'live'
       AND ${country === undefined ? sql`true` : sql`li.country = ${country}`}
       AND NOT EXISTS (SELECT 1 FROM claimable_rows c
                        WHERE c.country = li.country AND c.stage = li.stage AND c.store_host = li.store_host AND c.id = li.id)`;
  if (options.dryRun) {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM (${missing}) m`.execute(db);
    return rows[0].n;
  }
  const result = await sql`INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at) ${missing}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
