import { sql, type Kysely, type RawBuilder } from 'kysely';
import { runPrepared } from '../db/prepared-query.ts';
import type { Database } from '../db/schema.ts';

/**
 * claimable_rows lists the rows a worker may claim (waiting, unlocked, not
 * live). Every transition of a row is an operation in src/queue that keeps
 * the list in the same statement, through `runTransition` here.
 *
 * Lock order (every operation, so no two statements wait on each other in a
 * circle):
 *   1. control rows (datasources, frontends, workers), one statement each,
 *      before any row of live_images;
 *   2. live_images rows, taken in ascending id order (`ORDER BY id FOR NO KEY
 *      UPDATE`), the only locks anyone waits for;
 *   3. claimable_rows entries, never waited for: a claim picks them with SKIP
 *      LOCKED, an operation deletes the entries of its rows with SKIP LOCKED
 *      (an entry another statement holds is being deleted by it), and inserts
 *      wait for nothing (no unique index).
 * An entry is a pointer, checked again when claimed: a stale or duplicate one
 * is dropped by the claim; a missing one would strand a row, so the manager's
 * `unlisted_rows` check is an alarm that must never fire.
 */

/** The one definition of a claimable row, over the table or alias `t`. */
export function claimableWhere(t: string): RawBuilder<boolean> {
  const r = sql.table(t);
  return sql<boolean>`(${r}.state = 'waiting' AND ${r}.locked_by IS NULL AND ${r}.stage <> 'live')`;
}

/**
 * A claimable row's priority in claimable_rows: 0 new (never live), 1 a rework
 * of a live row. Lookups of an entry by id name both (`priority IN (0, 1)`),
 * so the index (country, stage, store_host, priority, id) finds it in two
 * descents instead of walking the whole backlog of its stage.
 */
export function priorityOf(t: string): RawBuilder<number> {
  return sql<number>`(CASE WHEN ${sql.table(t)}.live_data IS NULL THEN 0 ELSE 1 END)::smallint`;
}

/** What a transition's UPDATE returns (`RETURNING ${relistColumns('li')}`), for relisting. */
export function relistColumns(table: string): RawBuilder<unknown> {
  const t = sql.table(table);
  return sql`${t}.id, ${t}.country, ${t}.stage, ${t}.store_host, ${t}.state, ${t}.locked_by, ${t}.next_attempt_at, ${priorityOf(table)} AS priority`;
}

export interface Transition {
  /**
   * `SELECT ... FROM live_images li ... WHERE ...`: the rows to change, with
   * their `id` (and `country, stage, store_host` when `mayBeListed`). They are
   * locked in id order (this appends the ORDER BY and the lock) into a CTE
   * named `locked`, which the UPDATE joins as its only other row source.
   */
  candidates: RawBuilder<unknown>;
  /** `UPDATE live_images li SET ... FROM locked WHERE li.id = locked.id ... RETURNING ${relistColumns('li')}`. */
  update: RawBuilder<unknown>;
  /**
   * Whether the rows may have entries now (they were unlocked): their entries
   * are dropped. False for rows a worker holds (claimed: no entry), the hot path.
   */
  mayBeListed: boolean;
}

/**
 * Runs one transition as one statement: locks the candidate rows in id order,
 * updates them, drops their old entries, lists those left claimable (with
 * their priority) and wakes the daemons of their stage. Returns the rows updated.
 */
export async function runTransition(db: Kysely<Database>, t: Transition): Promise<number> {
  const unlist = t.mayBeListed
    ? sql`unlisted AS (
           DELETE FROM claimable_rows c
            WHERE c.ctid = ANY(ARRAY(
                    SELECT c2.ctid FROM claimable_rows c2 JOIN locked o
                        ON c2.country = o.country AND c2.stage = o.stage AND c2.store_host = o.store_host
                       AND c2.priority IN (0, 1) AND c2.id = o.id
                       FOR UPDATE OF c2 SKIP LOCKED))),`
    : sql``;
  const [row] = await runPrepared(
    db,
    sql<{ updated: number }>`
    WITH locked AS MATERIALIZED (${t.candidates} ORDER BY li.id FOR NO KEY UPDATE OF li),
         ${unlist}
         updated AS (${t.update}),
         listed AS (
           INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at, priority)
           SELECT id, country, stage, store_host, next_attempt_at, priority FROM updated
            WHERE state = 'waiting' AND locked_by IS NULL AND stage <> 'live'
           RETURNING country, stage)
    SELECT (SELECT count(*) FROM updated)::int AS updated,
           (SELECT count(pg_notify('lis_work', country || ':' || stage)) FROM (SELECT DISTINCT country, stage FROM listed) s)::int AS woken`,
  );
  return row.updated;
}

/** Advisory-lock key (two-int form, namespace 'unls') under which unlisted rows are listed again. */
export const UNLISTED_LOCK = sql`${0x756e6c73}::int, 0`;

/**
 * The alarm: claimable rows that have no entry, which no operation leaves
 * (a transaction rolled back after a claim dropped an entry, or a hand-run
 * UPDATE). Lists them so they are worked, and returns how many (with
 * `dryRun`, only counts). Reads the backlog through live_images_waiting.
 */
export async function listMissingClaimable(db: Kysely<Database>, country?: string, options: { dryRun?: boolean } = {}): Promise<number> {
  const missing = sql`
    SELECT li.id, li.country, li.stage, li.store_host, li.next_attempt_at, ${priorityOf('li')} FROM live_images li
     WHERE ${claimableWhere('li')}
       AND ${country === undefined ? sql`true` : sql`li.country = ${country}`}
       AND NOT EXISTS (SELECT 1 FROM claimable_rows c
                        WHERE c.country = li.country AND c.stage = li.stage AND c.store_host = li.store_host
                          AND c.priority IN (0, 1) AND c.id = li.id)`;
  if (options.dryRun) {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM (${missing}) m`.execute(db);
    return rows[0].n;
  }
  // One lister at a time (two managers run the check at once): the second reads after the first's commit and
  // finds nothing to list, instead of listing the same rows again and raising the same alarm twice.
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${UNLISTED_LOCK})`.execute(trx);
    const result = await sql`INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at, priority) ${missing}`.execute(trx);
    return Number(result.numAffectedRows ?? 0);
  });
}
