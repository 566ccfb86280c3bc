import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { relistColumns, runTransition } from './claimable-rows.ts';

/** Gives rows back untouched (no attempt counted), for another worker or a later run. */
export async function releaseRows(db: Db, workerId: string, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return runTransition(db, {
    mayBeListed: false,
    candidates: sql`SELECT li.id, li.country, li.stage, li.store_host FROM live_images li
                     WHERE li.id = ANY(${ids}::bigint[]) AND li.locked_by = ${workerId}`,
    update: sql`
    UPDATE live_images li SET locked_by = NULL, locked_at = NULL FROM locked WHERE li.id = locked.id
    RETURNING ${relistColumns('li')}`,
  });
}

/**
 * Every row a worker holds, given back: at start-up for a worker id that a
 * dead process used before, and by the manager for a dead worker (in the
 * transaction that marks it stopped).
 */
export async function releaseAllHeldBy(db: Db, workerId: string): Promise<number> {
  return runTransition(db, {
    mayBeListed: false,
    candidates: sql`SELECT li.id, li.country, li.stage, li.store_host FROM live_images li WHERE li.locked_by = ${workerId}`,
    update: sql`
    UPDATE live_images li SET locked_by = NULL, locked_at = NULL FROM locked WHERE li.id = locked.id
    RETURNING ${relistColumns('li')}`,
  });
}
