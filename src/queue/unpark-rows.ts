import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

/** Unpark: a re-opened datasource's parked rows wait again, attempts reset (not rows parked for a purge). */
export async function unparkDatasourceRows(db: Db, country: string, datasourceId: number): Promise<number> {
  return moveRows(
    db,
    sql`li.country = ${country} AND li.datasource_id = ${datasourceId} AND li.state = 'parked' AND li.last_error_class IS DISTINCT FROM 'expired'`,
    sql`state = 'waiting', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now()`,
  );
}
