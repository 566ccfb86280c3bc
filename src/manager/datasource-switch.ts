import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { parkDatasourceRows } from '../queue/park-rows.ts';
import { unparkDatasourceRows } from '../queue/unpark-rows.ts';

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
    // The datasource's row first, then its rows (the queue's lock order).
    return parkDatasourceRows(trx, country, datasourceId);
  });
}

/**
 * The manager's disabling, on figures read at `judgedAt`: only while the datasource is still enabled and
 * unchanged since (not re-enabled by hand, not disabled by a person or by another host's manager meanwhile),
 * so that two managers disable it once and nobody acts on stale figures. Returns the rows parked, or null
 * when it was left as it was.
 */
export async function disableUnlessChanged(db: Db, country: string, datasourceId: number, reason: string, judgedAt: Date): Promise<number | null> {
  return db.transaction().execute(async (trx) => {
    const { numUpdatedRows } = await trx
      .updateTable('datasources')
      .set({ enabled: false, disabled_reason: reason, disabled_at: sql`now()`, updated_at: sql`now()` })
      .where('country', '=', country)
      .where('datasource_id', '=', datasourceId)
      .where('enabled', '=', true)
      .where('updated_at', '<', judgedAt)
      .executeTakeFirst();
    if (Number(numUpdatedRows) === 0) return null;
    // The datasource's row first, then its rows (the queue's lock order).
    return parkDatasourceRows(trx, country, datasourceId);
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
    return unparkDatasourceRows(trx, country, datasourceId);
  });
}
