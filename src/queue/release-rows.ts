import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { relistColumns, runTransition } from './claimable-rows.ts';
import { parkedIfDisabled } from './park-rows.ts';
import type { WorkStage } from './stages.ts';

/** Gives rows back untouched (no attempt counted), for another worker or a later run. */
export async function releaseRows(db: Db, workerId: string, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return unlockRows(
    db,
    sql`SELECT li.id, li.country, li.stage, li.store_host FROM live_images li
                     WHERE li.id = ANY(${ids}::bigint[]) AND li.locked_by = ${workerId}`,
  );
}

/**
 * The rows a worker holds. A held row is waiting (a claim takes only waiting rows, and nothing changes a held
 * row's state but the statement that unlocks it; one locked in another state, left by a hand-run UPDATE, is
 * db_scan's `locked_but_not_claimable`), so they are read through live_images_waiting: the backlog, not the
 * table. No index names locked_by (a claim stays a HOT update), so `locked_by = X` alone read the whole table:
 * 2.9 s warm at 2.5M rows (0.3 s so), and stuck_jobs does it once per dead worker, a daemon once at its start.
 */
export function heldBy(workerId: string) {
  return sql`SELECT li.id, li.country, li.stage, li.store_host FROM live_images li WHERE li.state = 'waiting' AND li.locked_by = ${workerId}`;
}

/**
 * Every row a worker holds, given back: at start-up for a worker id that a
 * dead process used before, and by the manager for a dead worker (in the
 * transaction that marks it stopped).
 */
export async function releaseAllHeldBy(db: Db, workerId: string): Promise<number> {
  return unlockRows(db, heldBy(workerId));
}

/**
 * The rows a worker holds that it does not have in hand (`kept`), given back untouched: after a lost connection
 * (a database restored from a backup, or failed over), the rows the database says it holds may be others than
 * those it works. For a worker whose claims have no one scope (lis_imaged claims rows of any country and stage
 * for its requests); a daemon uses releaseHeldExcept, in its claims' scope.
 */
export async function releaseHeldByExcept(db: Db, workerId: string, kept: string[]): Promise<number> {
  return unlockRows(db, sql`${heldBy(workerId)} AND NOT (li.id = ANY(${kept}::bigint[]))`);
}

/** The rows one worker's claims may take: its stage's rows of one country and store host (ClaimRequest). */
export interface ClaimScope {
  workerId: string;
  country: string;
  stage: WorkStage;
  storeHost: string;
}

/**
 * The rows a worker holds in its claims' scope that none of its chunks in hand does (`kept`), given back
 * untouched: the rows of a claim whose answer was lost (the server committed it, the path died before
 * the reply came back), which the worker never learnt it holds. Its heartbeat being alive, the manager
 * would never release them. Read through the claim index (a held row is waiting), so its cost follows the
 * scope's backlog, not the table; the runner calls it only after a claim failed.
 */
export async function releaseHeldExcept(db: Db, scope: ClaimScope, kept: string[]): Promise<number> {
  return unlockRows(
    db,
    sql`SELECT li.id, li.country, li.stage, li.store_host FROM live_images li
                     WHERE li.country = ${scope.country} AND li.stage = ${scope.stage} AND li.store_host = ${scope.storeHost}
                       AND li.state = 'waiting' AND li.locked_by = ${scope.workerId} AND NOT (li.id = ANY(${kept}::bigint[]))`,
  );
}

/**
 * The rows `candidates` selects (id, country, stage, store_host), unlocked and listed claimable again, untouched:
 * no attempt counted, no error recorded (parked instead when their datasource was disabled meanwhile). The one
 * transition every give-back above is.
 */
function unlockRows(db: Db, candidates: RawBuilder<unknown>): Promise<number> {
  return runTransition(db, {
    mayBeListed: false,
    candidates,
    update: sql`
    UPDATE live_images li SET state = ${parkedIfDisabled(sql`li.state`)}, locked_by = NULL, locked_at = NULL FROM locked WHERE li.id = locked.id
    RETURNING ${relistColumns('li')}`,
  });
}
