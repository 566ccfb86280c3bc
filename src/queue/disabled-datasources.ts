import type { Db } from '../db/connect.ts';

/** A datasource that is disabled: its rows are parked, and no daemon claims them. */
export interface DisabledDatasource {
  datasourceId: number;
  reason: string | null;
}

/**
 * The disabled datasources of `country`, oldest first: what a run by hand names as it ends with no rows gained,
 * since their rows are parked (not waiting) and it would otherwise end as if there were nothing left. One read of
 * the datasources table (a few rows), not of the rows: parked rows have no index.
 */
export async function disabledDatasources(db: Db, country: string): Promise<DisabledDatasource[]> {
  const rows = await db
    .selectFrom('datasources')
    .select(['datasource_id', 'disabled_reason'])
    .where('country', '=', country)
    .where('enabled', '=', false)
    .orderBy('disabled_at')
    .orderBy('datasource_id')
    .execute();
  return rows.map((r) => ({ datasourceId: r.datasource_id, reason: r.disabled_reason }));
}
