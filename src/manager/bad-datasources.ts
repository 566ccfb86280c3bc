import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { sourceFaultClasses } from '../failure/failure-reasons.ts';
import { disableUnlessChanged } from './datasource-switch.ts';
import { recordEvent } from './manager-events.ts';

export interface DatasourceHealth {
  country: string;
  datasourceId: number;
  /** Distinct rows tried in the window (not attempts: a row retried six times is one row). */
  total: number;
  /** Distinct rows of those whose source (URL, server, file) failed; our own faults never count. */
  failed: number;
  /** The most frequent source failure class among those rows, and on how many rows. */
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
  const top = h.topReason ? ` (top reason: ${h.topReason} on ${h.topReasonCount} rows)` : '';
  return `${Math.round(rate * 100)}% of ${h.total} rows failed in the last ${policy.windowHours}h${top}`;
}

/**
 * Datasources that may be bad, cheaply: from the daemons' per-minute outcome
 * counts, those with at least `minFailures` source-fault outcomes in the
 * window. Outcomes are at least as many as rows, so a datasource left out
 * here cannot have that many failed rows either.
 */
async function suspects(db: Db, windowHours: number, minFailures: number, country?: string): Promise<Array<{ country: string; datasourceId: number }>> {
  const { rows } = await sql<{ country: string; datasource_id: number }>`
    SELECT m.country, m.datasource_id
      FROM datasource_minutes m
      JOIN datasources d ON d.country = m.country AND d.datasource_id = m.datasource_id AND d.enabled
     WHERE m.minute > now() - make_interval(secs => ${windowHours * 3600}::float8)
       AND m.minute >= date_trunc('minute', d.updated_at)
       AND m.error_class = ANY(${sourceFaultClasses()}::text[])
       AND ${country === undefined ? sql`true` : sql`m.country = ${country}`}
     GROUP BY 1, 2 HAVING sum(m.n) >= ${minFailures}`.execute(db);
  return rows.map((r) => ({ country: r.country, datasourceId: r.datasource_id }));
}

/**
 * Distinct rows of one datasource tried in the window, and those whose source
 * failed, from the rows themselves (through live_images_perceptual_hash, which
 * leads with country and datasource). A row counts as tried when it was
 * changed in the window after the datasource was last changed and has been
 * worked at all; as failed when its last failure is the source's fault. A row
 * that failed and then went on is not a bad row.
 */
async function rowHealth(db: Db, windowHours: number, country: string, datasourceId: number): Promise<DatasourceHealth> {
  const { rows } = await sql<{ total: string; failed: string; top_reason: string | null; top_count: string | null }>`
    WITH tried AS (
      SELECT li.last_error_class AS error_class,
             li.last_error_class = ANY(${sourceFaultClasses()}::text[]) AS source_fault
        FROM live_images li JOIN datasources d USING (country, datasource_id)
       WHERE li.country = ${country} AND li.datasource_id = ${datasourceId}
         AND li.updated_at > now() - make_interval(secs => ${windowHours * 3600}::float8)
         AND li.updated_at > d.updated_at
         AND (li.attempts > 0 OR li.stage <> 'download' OR li.state = 'failed' OR li.last_error_class IS NOT NULL)),
    reasons AS (SELECT error_class, count(*) AS n FROM tried WHERE source_fault GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1)
    SELECT (SELECT count(*) FROM tried) AS total,
           (SELECT count(*) FROM tried WHERE source_fault) AS failed,
           (SELECT error_class FROM reasons) AS top_reason,
           (SELECT n FROM reasons) AS top_count`.execute(db);
  const r = rows[0];
  return { country, datasourceId, total: Number(r.total), failed: Number(r.failed), topReason: r.top_reason, topReasonCount: Number(r.top_count ?? 0) };
}

/**
 * Enabled datasources worked in the window (at least minAttempts outcomes, done or the source's fault), from
 * the per-minute counts: what the bad ones are measured against, to tell a bad feed from our own outage.
 */
async function activeDatasources(db: Db, windowHours: number, minOutcomes: number, country?: string): Promise<string[]> {
  const { rows } = await sql<{ key: string }>`
    SELECT m.country || ':' || m.datasource_id AS key FROM datasource_minutes m
      JOIN datasources d ON d.country = m.country AND d.datasource_id = m.datasource_id AND d.enabled
     WHERE m.minute > now() - make_interval(secs => ${windowHours * 3600}::float8)
       AND (m.error_class = '' OR m.error_class = ANY(${sourceFaultClasses()}::text[]))
       AND ${country === undefined ? sql`true` : sql`m.country = ${country}`}
     GROUP BY m.country, m.datasource_id HAVING sum(m.n) >= ${minOutcomes}`.execute(db);
  return rows.map((r) => r.key);
}

/**
 * Pure: the source failures a datasource needs in the window, at the policy's rate of its outcomes, to count as
 * failing along with a bad one (a fifth of minAttempts, 10 by default). A feed that crosses minAttempts first (the
 * nightly batch of the biggest) is not alone when the others' fewer rows fail as badly: our DNS or uplink going
 * down fails every feed at once, each reaching minAttempts at its own pace; judged one at a time, each was
 * disabled alone, run after run.
 */
export function evidenceFailures(policy: BadDatasourcePolicy): number {
  return Math.max(1, Math.ceil(policy.minAttempts / 5));
}

/**
 * Enabled datasources whose outcomes in the window (done or the source's fault, since the datasource last changed)
 * are at least `minFailures` source failures and at least `share` of them: those that may be failing, from the
 * per-minute counts (a row done counts once per stage, a row failing once per try: their rows decide).
 */
async function mayBeFailing(db: Db, policy: BadDatasourcePolicy, minFailures: number, share: number, country?: string) {
  const { rows } = await sql<{ country: string; datasource_id: number }>`
    SELECT m.country, m.datasource_id FROM datasource_minutes m
      JOIN datasources d ON d.country = m.country AND d.datasource_id = m.datasource_id AND d.enabled
     WHERE m.minute > now() - make_interval(secs => ${policy.windowHours * 3600}::float8)
       AND m.minute >= date_trunc('minute', d.updated_at)
       AND (m.error_class = '' OR m.error_class = ANY(${sourceFaultClasses()}::text[]))
       AND ${country === undefined ? sql`true` : sql`m.country = ${country}`}
     GROUP BY m.country, m.datasource_id
    HAVING sum(m.n) FILTER (WHERE m.error_class <> '') >= ${minFailures}
       AND sum(m.n) FILTER (WHERE m.error_class <> '') >= ${share}::float8 * sum(m.n)`.execute(db);
  return rows;
}

/**
 * Pure: true when the bad datasources are most of those worked (two at least): feeds do not die
 * together, so that is our side failing (DNS, the uplink, a proxy), whose errors look like the source's.
 */
export function failingTogether(bad: number, active: number): boolean {
  return bad >= 2 && bad * 2 > active;
}

/** Row figures of every enabled datasource that might cross the policy's threshold. */
export async function datasourceHealth(db: Db, policy: BadDatasourcePolicy, country?: string): Promise<DatasourceHealth[]> {
  const minFailures = Math.max(1, Math.ceil(policy.minAttempts * policy.failureRate));
  const health: DatasourceHealth[] = [];
  for (const s of await suspects(db, policy.windowHours, minFailures, country)) health.push(await rowHealth(db, policy.windowHours, s.country, s.datasourceId));
  return health;
}

/**
 * Disables every datasource whose rows' sources failed at or above the
 * threshold (with at least minAttempts rows tried), parking its rows. Returns
 * what it disabled; the caller tells the operators. When most of the datasources
 * worked fail at once, none is: the cause is on our side (failingTogether).
 */
export async function disableBadDatasources(
  db: Db,
  policy: BadDatasourcePolicy,
  country?: string,
  /** Told when most datasources fail at once (then none is disabled): for the error log. */
  onFailingTogether?: (message: string) => void,
): Promise<Array<DatasourceHealth & { reason: string; parked: number }>> {
  const disabled: Array<DatasourceHealth & { reason: string; parked: number }> = [];
  // The figures' time: a datasource changed after it (enabled again, disabled by someone else) is left alone.
  const { rows: clock } = await sql<{ at: Date }>`SELECT clock_timestamp() AS at`.execute(db);
  const judgedAt = clock[0].at;
  const bad = (await datasourceHealth(db, policy, country)).flatMap((health) => {
    const reason = judgeDatasource(health, policy);
    return reason ? [{ health, reason }] : [];
  });
  if (bad.length >= 1) {
    // Those whose fewer rows (evidenceFailures) fail at the rate fail along with the bad ones. Their rows are read
    // only when their outcomes are at least half the rate source failures: most feeds have a few 404s, not that.
    const evidence = { ...policy, minAttempts: evidenceFailures(policy) };
    const failing: string[] = [];
    for (const d of await mayBeFailing(db, policy, Math.ceil(evidence.minAttempts * policy.failureRate), policy.failureRate / 2, country)) {
      const health = await rowHealth(db, policy.windowHours, d.country, d.datasource_id);
      if (judgeDatasource(health, evidence) !== null) failing.push(`${d.country}:${d.datasource_id}`);
    }
    const failingKeys = new Set([...bad.map((b) => `${b.health.country}:${b.health.datasourceId}`), ...failing]);
    const active = new Set([...(await activeDatasources(db, policy.windowHours, policy.minAttempts, country)), ...failingKeys]).size;
    if (failingTogether(failingKeys.size, active)) {
      const reasons = [...new Set(bad.map((b) => b.health.topReason))].join(', ');
      await recordEvent(db, {
        check: 'bad_datasources',
        country,
        rows: 0,
        detail: `${failingKeys.size} of ${active} active datasources fail at once (${reasons}): our network, DNS or proxy, not their feeds; none disabled`,
      });
      onFailingTogether?.(
        `${failingKeys.size} of ${active} active datasources fail at once (top reasons: ${reasons}): check this side's DNS, uplink and proxy; none disabled`,
      );
      return [];
    }
  }
  for (const { health, reason } of bad) {
    const parked = await disableUnlessChanged(db, health.country, health.datasourceId, reason, judgedAt);
    if (parked === null) continue;
    await recordEvent(db, {
      check: 'bad_datasources',
      country: health.country,
      subject: String(health.datasourceId),
      rows: parked,
      detail: `disabled datasource ${health.datasourceId} of ${health.country}: ${reason}; ${parked} rows parked`,
    });
    disabled.push({ ...health, reason, parked });
  }
  return disabled;
}
