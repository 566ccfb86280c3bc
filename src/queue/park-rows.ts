import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

/**
 * Park: a disabled datasource's waiting rows no worker holds stop being
 * claimable (rows being worked finish as usual). The caller disables the
 * datasource first, in the same transaction (lock order: control rows first).
 */
export async function parkDatasourceRows(db: Db, country: string, datasourceId: number): Promise<number> {
  return moveRows(
    db,
    sql`li.country = ${country} AND li.datasource_id = ${datasourceId} AND li.state = 'waiting' AND li.locked_by IS NULL`,
    sql`state = 'parked'`,
  );
}

/**
 * For a statement that gives rows a worker held back to the queue (`li`): `state` ('waiting' or another), or
 * 'parked' when the row would wait and its datasource is disabled. The disabling parks the waiting rows no worker
 * holds; those in hand came back after it (a retryable failure of the very feed judged bad, a give-back, a dead
 * worker's release) as claimable rows of a disabled datasource, tried again until failed at queue.maxAttempts, and
 * then not among the rows its re-opening resumes. A lookup of the datasource's key per row, none when none waits.
 */
export function parkedIfDisabled(state: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`CASE WHEN ${state} = 'waiting' AND EXISTS (SELECT 1 FROM datasources d
                                   WHERE d.country = li.country AND d.datasource_id = li.datasource_id AND NOT d.enabled)
                     THEN 'parked' ELSE ${state} END`;
}
