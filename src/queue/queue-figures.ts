/** What the queue holds and how fast it moves: reads for reports, the status page, /metrics and the stores' checks (no writes). */
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { STAGES, type WorkStage } from './stages.ts';
import { isSourceFault } from '../failure/failure-reasons.ts';

const inCountry = (country: string | undefined, column = sql.ref('country')) => (country === undefined ? sql`true` : sql`${column} = ${country}`);

/** Rows per country, stage and state: one scan of the table (a report's figure, not a scrape's). */
export async function rowCounts(db: Db, country?: string): Promise<Array<{ country: string; stage: string; state: string; rows: number }>> {
  const { rows } = await sql<{ country: string; stage: string; state: string; n: string }>`
    SELECT country, stage, state, count(*) AS n FROM live_images WHERE ${inCountry(country)}
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`.execute(db);
  return rows.map((r) => ({ country: r.country, stage: r.stage, state: r.state, rows: Number(r.n) }));
}

/**
 * The queue per country and stage: rows waiting (due now, or later after a
 * failure), rows held by workers, and how long the oldest due row has waited.
 * Reads only the backlog (through live_images_waiting), so it is cheap enough to scrape.
 */
export async function queueDepth(
  db: Db,
  country?: string,
): Promise<Array<{ country: string; stage: string; due: number; later: number; held: number; oldestSeconds: number }>> {
  const { rows } = await sql<{ country: string; stage: string; due: string; later: string; held: string; oldest: number | null }>`
    SELECT country, stage,
           count(*) FILTER (WHERE locked_by IS NULL AND next_attempt_at <= now()) AS due,
           count(*) FILTER (WHERE locked_by IS NULL AND next_attempt_at > now()) AS later,
           count(*) FILTER (WHERE locked_by IS NOT NULL) AS held,
           extract(epoch FROM now() - min(updated_at) FILTER (WHERE locked_by IS NULL AND next_attempt_at <= now()))::float8 AS oldest
      FROM live_images
     WHERE state = 'waiting' AND stage IN ('download', 'thumbnail', 'push') AND ${inCountry(country)}
     GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.map((r) => ({
    country: r.country,
    stage: r.stage,
    due: Number(r.due),
    later: Number(r.later),
    held: Number(r.held),
    oldestSeconds: Math.round(r.oldest ?? 0),
  }));
}

/** Rows done and failed per component over the last `minutes`, from the workers' per-minute counts. */
export async function throughput(
  db: Db,
  minutes: number,
  country?: string,
): Promise<Array<{ component: string; done: number; failed: number; perMinute: number }>> {
  const { rows } = await sql<{ component: string; done: string; failed: string }>`
    SELECT component, sum(done) AS done, sum(failed) AS failed FROM worker_minutes
     WHERE minute > now() - make_interval(mins => ${minutes}) AND ${inCountry(country)}
     GROUP BY 1 ORDER BY 1`.execute(db);
  return rows.map((r) => ({
    component: r.component,
    done: Number(r.done),
    failed: Number(r.failed),
    perMinute: Math.round((Number(r.done) / minutes) * 10) / 10,
  }));
}

/** Per minute, per component: the chart of throughput over time. */
export async function throughputSeries(db: Db, minutes: number): Promise<Array<{ minute: Date; component: string; done: number; failed: number }>> {
  const { rows } = await sql<{ minute: Date; component: string; done: string; failed: string }>`
    SELECT minute, component, sum(done) AS done, sum(failed) AS failed FROM worker_minutes
     WHERE minute > now() - make_interval(mins => ${minutes}) GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.map((r) => ({ minute: r.minute, component: r.component, done: Number(r.done), failed: Number(r.failed) }));
}

/** A datasource's outcomes over a window. Tries, not rows: a row retried six times is six tries. */
export interface DatasourceFailures {
  country: string;
  datasourceId: number;
  enabled: boolean;
  /** Every try (done or failed). */
  tries: number;
  /** Tries that failed by the source's fault: what can get a datasource disabled (counted there in rows). */
  failed: number;
  /** Tries that failed by our own fault (a frontend down, a full store): never the datasource's. */
  ours: number;
  rate: number;
  reasons: Array<{ reason: string; tries: number }>;
}

/** Per datasource over the last `hours`: tries, source failures and our own, and the top failure reasons. */
export async function datasourceFailures(db: Db, hours: number, country?: string): Promise<DatasourceFailures[]> {
  const { rows } = await sql<{ country: string; datasource_id: number; enabled: boolean | null; error_class: string; n: string }>`
    SELECT m.country, m.datasource_id, d.enabled, m.error_class, sum(m.n) AS n
      FROM datasource_minutes m LEFT JOIN datasources d USING (country, datasource_id)
     WHERE m.minute > now() - make_interval(hours => ${hours}) AND ${inCountry(country, sql.ref('m.country'))}
     GROUP BY 1, 2, 3, 4`.execute(db);
  const by = new Map<string, DatasourceFailures>();
  for (const r of rows) {
    const key = `${r.country}:${r.datasource_id}`;
    const entry = by.get(key) ?? {
      country: r.country,
      datasourceId: r.datasource_id,
      enabled: r.enabled ?? true,
      tries: 0,
      failed: 0,
      ours: 0,
      rate: 0,
      reasons: [],
    };
    const n = Number(r.n);
    entry.tries += n;
    if (r.error_class !== '') {
      if (isSourceFault(r.error_class)) entry.failed += n;
      else entry.ours += n;
      entry.reasons.push({ reason: r.error_class, tries: n });
    }
    by.set(key, entry);
  }
  return [...by.values()]
    .map((e) => ({
      ...e,
      rate: e.tries ? Math.round((e.failed / e.tries) * 1000) / 1000 : 0,
      reasons: e.reasons.sort((a, b) => b.tries - a.tries).slice(0, 5),
    }))
    .sort((a, b) => b.failed + b.ours - a.failed - a.ours || a.country.localeCompare(b.country) || a.datasourceId - b.datasourceId);
}

/**
 * Whether any row past `stage` keeps its files in the stores of `storeHost` (`''`: stores shared by every
 * host): a store that a stage writes should then not be empty. Stops at the first such row.
 */
export async function rowsPastStageOnHost(db: Db, storeHost: string, stage: WorkStage): Promise<boolean> {
  const later = STAGES.slice(STAGES.indexOf(stage) + 1);
  const { rows } = await sql<{ found: boolean }>`
    SELECT EXISTS (SELECT 1 FROM live_images WHERE store_host = ${storeHost} AND stage = ANY(${later}::text[])) AS found`.execute(db);
  return rows[0].found;
}
