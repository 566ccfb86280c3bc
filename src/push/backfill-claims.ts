import crypto from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import { closeDb, createDb, urlOf, type Db } from '../db/connect.ts';
import type { QueryBounds } from '../db/query-bounds.ts';
import { LisError } from '../errors.ts';
import { servedOrWorkedOn } from './push-records.ts';

/**
 * With shared stores every pushing host can send every row, so every host's backfill found the whole site
 * missing from a new frontend and sent all of it: N hosts, N copies, racing on the same files. A pass now
 * claims each chunk's rows in their push records (`frontend_pushes.claimed_by`), and the other hosts' passes
 * pass claimed rows by, so the hosts split the work.
 *
 * A claim holds while the pass that made it lives: its token is the second key of an advisory lock that the
 * pass's session holds (first key BACKFILL_LOCK). A host that dies mid-chunk loses its session, and the
 * server its lock, at once (a host that hangs: once the server drops its session), and its claims are void:
 * the next pass of any host sends those rows. No lease to wait out, nothing for lis_managerd to clear. A
 * pass releases its claims after each chunk, once the chunk's results are recorded.
 */

/** First key of backfill's advisory locks ('bkfl'); the second is a pass's token. Both int4, as pg_locks shows them. */
const BACKFILL_LOCK = 0x626b666c;

/** SQL: backfill's advisory locks granted in this database, as pg_locks shows them (alias `l`). */
const passLocks = sql`l.locktype = 'advisory' AND l.granted AND l.classid = ${BACKFILL_LOCK}::int::oid AND l.objsubid = 2
                      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`;

/**
 * SQL: the CTE `live_passes` (token, name): the passes alive as the statement began, each with its session's
 * name (withClaimToken names it). pg_locks read once: for a look (which rows to try, who holds what), not for
 * a decision: a pass that takes its lock while the statement runs is not in it (see heldByLivePass).
 */
export function livePassesCte(): RawBuilder<unknown> {
  return sql`live_passes AS MATERIALIZED (
               SELECT l.objid::int8 AS token, a.application_name AS name
                 FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE ${passLocks})`;
}

/**
 * SQL: push record `fp` is claimed by a live pass other than `token`'s, as livePassesCte saw them. A claim of
 * `token` itself (an earlier pass's whose session ended, its token drawn again) is ours to redo.
 */
export function claimedElsewhere(fp: string, token: number): RawBuilder<boolean> {
  const claim = sql.ref(`${fp}.claimed_by`);
  return sql<boolean>`(${claim} IS NOT NULL AND ${claim} <> ${token}::int AND ${claim} IN (SELECT token FROM live_passes))`;
}

/**
 * SQL: the pass that claimed record `fp` lives now: pg_locks read for the record itself, when the statement
 * weighs it, so that a claim written by a pass that began during the statement (re-read under its row lock)
 * counts as held.
 */
function heldByLivePass(fp: string): RawBuilder<boolean> {
  return sql<boolean>`EXISTS (SELECT 1 FROM pg_locks l WHERE ${passLocks} AND l.objid = ${sql.ref(`${fp}.claimed_by`)}::oid)`;
}

/** A pass's claim token; `lost`: its session went (the lock with it), so its claims are void from then on. */
export interface ClaimToken {
  readonly token: number;
  lost: Error | null;
}

/**
 * Runs `work` holding a token of its own: the advisory lock (BACKFILL_LOCK, token) on a database session of its
 * own, not the pool's (which it would keep from the chunk loop for the whole pass, all of it at a poolSize of 1),
 * named `name` (the others' log says who holds what), ended after.
 */
export async function withClaimToken<T>(db: Db, bounds: QueryBounds, name: string, work: (claim: ClaimToken) => Promise<T>): Promise<T> {
  const claim: { token: number; lost: Error | null } = { token: 0, lost: null };
  const sessions = createDb(urlOf(db), 1, (error) => (claim.lost ??= error), bounds);
  try {
    // The connection held for the whole pass: back in the pool, an idle one is closed (and the lock with it).
    return await sessions.connection().execute(async (session) => {
      // A token another live pass holds is drawn again (one in two billion).
      for (let tries = 0; claim.token === 0; tries++) {
        if (tries === 5) throw new LisError('ERR_BACKFILL_TOKEN', 'could not take a backfill token: five drawn, all held by live passes');
        const drawn = crypto.randomInt(1, 2 ** 31 - 1);
        const { rows } = await sql<{ locked: boolean }>`
          SELECT pg_try_advisory_lock(${BACKFILL_LOCK}::int, ${drawn}::int) AS locked, set_config('application_name', ${name.slice(0, 63)}, false)`.execute(
          session,
        );
        if (rows[0].locked) claim.token = drawn;
      }
      return work(claim);
    });
  } finally {
    // Ending the session releases the lock.
    await closeDb(sessions, bounds.connectMs);
  }
}

/**
 * Claims for pass `token` what it can of `ids` (rows found lacking on `frontend` by servedRowsLacking, in id
 * order): returns the ids claimed. A row without a record gets one, claimed; a row with one is claimed if it
 * still lacks that frontend (not pushed since, not backing off) and no live pass holds it. Two statements,
 * neither holding locks while it waits: the insert waits only for records being written (in id order, as
 * recordPushResults writes them, so never in a cycle), the update skips records another statement holds, and
 * reads each one it locks as it is now. A row another pass claimed or sent after the caller's look is not
 * claimed; one left out this way that still lacks is found by a later look.
 */
export async function claimRows(db: Db, frontend: string, token: number, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const inserted = await sql<{ id: string }>`
    WITH added AS (
      INSERT INTO frontend_pushes AS fp (frontend, country, image_hash, claimed_by)
      SELECT ${frontend}, li.country, li.image_hash, ${token}::int FROM live_images li
       WHERE li.id = ANY(${ids}::bigint[])
       ORDER BY li.id
      ON CONFLICT (frontend, country, image_hash) DO NOTHING
      RETURNING fp.country, fp.image_hash)
    SELECT li.id FROM added JOIN live_images li ON li.country = added.country AND li.image_hash = added.image_hash
     WHERE li.id = ANY(${ids}::bigint[])`.execute(db);
  const claimed = new Set(inserted.rows.map((r) => r.id));
  const rest = ids.filter((id) => !claimed.has(id));
  if (rest.length === 0) return claimed;
  const updated = await sql<{ id: string }>`
    WITH free AS (
           SELECT li.id, fp.country, fp.image_hash FROM frontend_pushes fp JOIN live_images li ON li.country = fp.country AND li.image_hash = fp.image_hash
            WHERE li.id = ANY(${rest}::bigint[]) AND fp.frontend = ${frontend}
              AND NOT (fp.pushed_at IS NOT NULL AND ${servedOrWorkedOn('fp', 'li')}) AND fp.next_attempt_at <= now()
              AND (fp.claimed_by IS NULL OR fp.claimed_by = ${token}::int OR NOT ${heldByLivePass('fp')})
            ORDER BY li.id
              FOR UPDATE OF fp SKIP LOCKED),
         taken AS (
           UPDATE frontend_pushes fp SET claimed_by = ${token}::int
             FROM free WHERE fp.frontend = ${frontend} AND fp.country = free.country AND fp.image_hash = free.image_hash
           RETURNING free.id)
    SELECT id FROM taken`.execute(db);
  for (const r of updated.rows) claimed.add(r.id);
  return claimed;
}

/** Ends pass `token`'s claims on `frontend`: after a chunk, its results recorded (or none to record). */
export async function releaseClaims(db: Db, frontend: string, token: number): Promise<void> {
  await sql`UPDATE frontend_pushes SET claimed_by = NULL WHERE frontend = ${frontend} AND claimed_by = ${token}::int`.execute(db);
}

/** Rows of `country` that live passes other than `token`'s hold on `frontend`, by the name of the pass's session. */
export async function claimsElsewhere(db: Db, frontend: string, country: string, token: number): Promise<Array<{ name: string; rows: number }>> {
  const { rows } = await sql<{ name: string | null; rows: number }>`
    WITH ${livePassesCte()}
    SELECT lp.name, count(*)::int AS rows
      FROM frontend_pushes fp JOIN live_passes lp ON lp.token = fp.claimed_by
     WHERE fp.frontend = ${frontend} AND fp.claimed_by IS NOT NULL AND fp.claimed_by <> ${token}::int AND fp.country = ${country}
     GROUP BY lp.name
     ORDER BY lp.name`.execute(db);
  return rows.map((r) => ({ name: r.name || 'a session without a name', rows: r.rows }));
}

/**
 * Between passes, while other hosts' passes hold rows a frontend lacks: clears the claims of passes that ended
 * without releasing them (a host that died mid-chunk, or lost its database session), and counts those still
 * held. `freed` rows are lacking and nobody's: a pass now sends them. Reads the partial index of claims only.
 */
export async function clearEndedClaims(db: Db, country: string): Promise<{ freed: number; held: number }> {
  const { rows } = await sql<{ freed: number; held: number }>`
    WITH ${livePassesCte()},
         freed AS (
           UPDATE frontend_pushes fp SET claimed_by = NULL
            WHERE fp.claimed_by IS NOT NULL AND fp.country = ${country}
              AND fp.claimed_by NOT IN (SELECT token FROM live_passes) AND NOT ${heldByLivePass('fp')}
           RETURNING 1)
    SELECT (SELECT count(*) FROM freed)::int AS freed,
           (SELECT count(*) FROM frontend_pushes fp
             WHERE fp.claimed_by IS NOT NULL AND fp.country = ${country} AND fp.claimed_by IN (SELECT token FROM live_passes))::int AS held`.execute(db);
  return rows[0];
}
