import { sql } from 'kysely';
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
