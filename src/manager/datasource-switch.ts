import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';

/**
 * Disables a datasource and parks its waiting rows, so that no daemon claims
 * them (rows being worked right now finish as usual). New rows for it are
 * parked as they are inserted (a trigger). Returns the rows parked.
 */
export async function disableDatasource(db: Db, country: string, datasourceId: number, reason: string): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await sql`
      INSERT INTO datasources (country, datasource_id, enabled, disabled_reason, disabled_at)
      VALUES (${country}, ${datasourceId}, false, ${reason}, now())
      ON CONFLICT (country, datasource_id) DO UPDATE
        SET enabled = false, disabled_reason = EXCLUDED.disabled_reason, disabled_at = now(), updated_at = now()`.execute(trx);
    const parked = await sql`
      UPDATE live_images SET state = 'parked', updated_at = now()
       WHERE country = ${country} AND datasource_id = ${datasourceId} AND state = 'waiting' AND locked_by IS NULL`.execute(trx);
    return Number(parked.numAffectedRows ?? 0);
  });
}

/** Re-opens a datasource: its parked rows wait again, attempts reset. Returns the rows unparked (null: no such datasource). */
export async function enableDatasource(db: Db, country: string, datasourceId: number): Promise<number | null> {
  return db.transaction().execute(async (trx) => {
    const found = await trx
      .updateTable('datasources')
      .set({ enabled: true, disabled_reason: null, disabled_at: null, updated_at: sql`now()` })
      .where('country', '=', country)
      .where('datasource_id', '=', datasourceId)
      .executeTakeFirst();
    if (Number(found.numUpdatedRows) === 0) return null;
    const unparked = await sql`
      UPDATE live_images SET state = 'waiting', attempts = 0, same_error_count = 0, next_attempt_at = now(), updated_at = now()
       WHERE country = ${country} AND datasource_id = ${datasourceId} AND state = 'parked'`.execute(trx);
    return Number(unparked.numAffectedRows ?? 0);
  });
}
