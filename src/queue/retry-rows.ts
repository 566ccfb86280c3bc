import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows, optionalFilter } from './move-rows.ts';

export interface RetryFilter {
  country: string;
  /** A last_error_class, e.g. `http_404`. */
  reason?: string;
  datasourceId?: number;
  stage?: string;
}

/** Retry (`lis retry`): failed rows wait again in their stage, attempts reset. Returns how many. */
export async function retryFailedRows(db: Db, filter: RetryFilter): Promise<number> {
  return moveRows(
    db,
    sql`li.state = 'failed' AND li.country = ${filter.country} AND ${optionalFilter('last_error_class', filter.reason)}
        AND ${optionalFilter('datasource_id', filter.datasourceId)} AND ${optionalFilter('stage', filter.stage)}`,
    sql`state = 'waiting', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now()`,
  );
}
