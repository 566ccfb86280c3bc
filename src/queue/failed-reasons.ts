import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { optionalFilter } from './move-rows.ts';

export interface FailedReasonFilter {
  country: string;
  datasourceId?: number;
  stage?: string;
}

/**
 * The reasons (`last_error_class`) failed rows have now, with how many, most
 * first: what `lis retry --reason` could have meant when it matched nothing.
 * Read-only; the same scan as the retry itself, and only run when it found none.
 */
export async function failedReasonCounts(db: Db, filter: FailedReasonFilter): Promise<Array<{ reason: string; rows: number }>> {
  const { rows } = await sql<{ reason: string | null; rows: number }>`
    SELECT li.last_error_class AS reason, count(*)::int AS rows FROM live_images li
     WHERE li.state = 'failed' AND li.country = ${filter.country}
       AND ${optionalFilter('datasource_id', filter.datasourceId)} AND ${optionalFilter('stage', filter.stage)}
     GROUP BY li.last_error_class ORDER BY count(*) DESC, li.last_error_class`.execute(db);
  return rows.map((r) => ({ reason: r.reason ?? '(none)', rows: r.rows }));
}
