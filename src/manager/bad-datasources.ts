import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { disableDatasource } from './datasource-switch.ts';
import { recordEvent } from './manager-events.ts';

export interface DatasourceHealth {
  country: string;
  datasourceId: number;
  total: number;
  failed: number;
  /** The most frequent failure class in the window, and how often. */
  topReason: string | null;
  topReasonCount: number;
}

export interface BadDatasourcePolicy {
  windowHours: number;
  minAttempts: number;
  failureRate: number;
}

/** Pure: the verdict, with the reason operators will read. */
export function judgeDatasource(h: DatasourceHealth, policy: BadDatasourcePolicy): string | null {
  if (h.total < policy.minAttempts) return null;
  const rate = h.failed / h.total;
  if (rate < policy.failureRate) return null;
  const top = h.topReason ? ` (top reason: ${h.topReason} x${h.topReasonCount})` : '';
  return `${Math.round(rate * 100)}% of ${h.total} rows failed in the last ${policy.windowHours}h${top}`;
}

/** Failure figures of every enabled datasource over the window, from the daemons' per-minute outcome counts. */
export async function datasourceHealth(db: Db, windowHours: number, country?: string): Promise<DatasourceHealth[]> {
  const { rows } = await sql<{ country: string; datasource_id: number; total: string; failed: string; top_reason: string | null; top_count: string | null }>`
    WITH recent AS (
      SELECT m.country, m.datasource_id, m.error_class, sum(m.n) AS n
        FROM datasource_minutes m
        JOIN datasources d ON d.country = m.country AND d.datasource_id = m.datasource_id AND d.enabled
       WHERE m.minute > now() - make_interval(hours => ${windowHours}::int)
         -- Outcomes from before a datasource was last changed (re-enabled) do not count against it.
         AND m.minute > date_trunc('minute', d.updated_at)
         AND ${country === undefined ? sql`true` : sql`m.country = ${country}`}
       GROUP BY 1, 2, 3)
    SELECT country, datasource_id, sum(n) AS total, sum(n) FILTER (WHERE error_class <> '') AS failed,
           (array_agg(error_class ORDER BY n DESC) FILTER (WHERE error_class <> ''))[1] AS top_reason,
           (array_agg(n ORDER BY n DESC) FILTER (WHERE error_class <> ''))[1] AS top_count
      FROM recent GROUP BY 1, 2`.execute(db);
  return rows.map((r) => ({
    country: r.country,
    datasourceId: r.datasource_id,
    total: Number(r.total),
    failed: Number(r.failed ?? 0),
    topReason: r.top_reason,
    topReasonCount: Number(r.top_count ?? 0),
  }));
}

/**
 * Disables every datasource whose recent failure rate crosses the threshold
 * (with at least minAttempts rows worked), parking its rows. Returns what it
 * disabled; the caller tells the operators.
 */
export async function disableBadDatasources(db: Db, policy: BadDatasourcePolicy, country?: string): Promise<Array<DatasourceHealth & { reason: string; parked: number }>> {
  const disabled: Array<DatasourceHealth & { reason: string; parked: number }> = [];
  for (const health of await datasourceHealth(db, policy.windowHours, country)) {
    const reason = judgeDatasource(health, policy);
    if (!reason) continue;
    const parked = await disableDatasource(db, health.country, health.datasourceId, reason);
    await recordEvent(db, {
      check: 'bad_datasources', country: health.country, subject: String(health.datasourceId), rows: parked,
      detail: `disabled datasource ${health.datasourceId} of ${health.country}: ${reason}; ${parked} rows parked`,
    });
    disabled.push({ ...health, reason, parked });
  }
  return disabled;
}
