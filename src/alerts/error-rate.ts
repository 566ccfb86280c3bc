import { sql } from 'kysely';
import type { AlertsConfig } from '../config/alerts-config.ts';
import type { Db } from '../db/connect.ts';

/** A daemon's (a stage's in one country) rows done and failed in the recent window, and over the baseline before it. */
export interface StageRates {
  component: string;
  /** Null for rows counted without one. */
  country: string | null;
  done: number;
  failed: number;
  baselineDone: number;
  baselineFailed: number;
}

/** Pure: the verdict on a stage's error rate, as operators will read it; null when it is not far above its usual. */
export function judgeErrorRate(s: StageRates, policy: AlertsConfig['errorRate']): string | null {
  const rows = s.done + s.failed;
  if (rows < policy.minRows) return null;
  const rate = s.failed / rows;
  const baselineRows = s.baselineDone + s.baselineFailed;
  const usual = baselineRows ? s.baselineFailed / baselineRows : 0;
  if (rate < policy.minRate || rate < usual * policy.factor) return null;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const before = baselineRows
    ? `its usual ${pct(usual)} over the ${policy.baselineHours}h before (${baselineRows} rows)`
    : `no work in the ${policy.baselineHours}h before to compare with`;
  return `${pct(rate)} of ${rows} rows failed in the last ${policy.windowMinutes} min; ${before}`;
}

/**
 * Per component and country, from the workers' per-minute counts (failed: the source's failures, and the
 * rows given back for our faults that no other alert covers: a bug, a lost file): each
 * country's daemon on its own, so that a big country's good work does not
 * dilute a small one's failing below minRate.
 */
export async function stageRates(db: Db, policy: AlertsConfig['errorRate']): Promise<StageRates[]> {
  const window = sql`now() - make_interval(mins => ${policy.windowMinutes}::int)`;
  const start = sql`now() - make_interval(mins => ${policy.windowMinutes}::int) - make_interval(secs => ${policy.baselineHours * 3600}::float8)`;
  const { rows } = await sql<{
    component: string;
    country: string | null;
    done: string | null;
    failed: string | null;
    b_done: string | null;
    b_failed: string | null;
  }>`
    SELECT component, country,
           sum(done) FILTER (WHERE minute > ${window}) AS done, sum(failed + ours) FILTER (WHERE minute > ${window}) AS failed,
           sum(done) FILTER (WHERE minute <= ${window}) AS b_done, sum(failed + ours) FILTER (WHERE minute <= ${window}) AS b_failed
      FROM worker_minutes WHERE minute > ${start} GROUP BY component, country ORDER BY component, country`.execute(db);
  return rows.map((r) => ({
    component: r.component,
    country: r.country,
    done: Number(r.done ?? 0),
    failed: Number(r.failed ?? 0),
    baselineDone: Number(r.b_done ?? 0),
    baselineFailed: Number(r.b_failed ?? 0),
  }));
}
