import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { relistColumns, unlockAndRelist } from './claimable-rows.ts';

/** Gives rows back untouched (no attempt counted), for another worker or a later run. */
export async function releaseRows(db: Db, workerId: string, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return unlockAndRelist(db, sql`
    UPDATE live_images SET locked_by = NULL, locked_at = NULL
     WHERE id = ANY(${ids}::bigint[]) AND locked_by = ${workerId}
    RETURNING ${relistColumns('live_images')}`);
}

/** Every row a worker holds, given back: at start-up for a worker id that a dead process used before. */
export async function releaseAllHeldBy(db: Db, workerId: string): Promise<number> {
  return unlockAndRelist(db, sql`
    UPDATE live_images SET locked_by = NULL, locked_at = NULL WHERE locked_by = ${workerId}
    RETURNING ${relistColumns('live_images')}`);
}
