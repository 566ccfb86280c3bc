import { sql } from 'kysely';
import type { AlertsConfig } from '../config/alerts-config.ts';
import type { Db } from '../db/connect.ts';
import { S3_UNAVAILABLE_BUCKET } from '../failure/s3-unavailable.ts';
import { ALERT_KINDS, LOOKBACK, type Alert, type AlertKind } from './alert.ts';
import { judgeErrorRate, stageRates } from './error-rate.ts';
import { workersDied } from './worker-deaths.ts';

const iso = (d: Date) => d.toISOString();

async function datasourcesDisabled(db: Db): Promise<Alert[]> {
  const { rows } = await sql<{ country: string; datasource_id: number; disabled_reason: string | null; disabled_at: Date }>`
    SELECT country, datasource_id, disabled_reason, disabled_at FROM datasources
     WHERE NOT enabled AND disabled_at > ${LOOKBACK} AND coalesce(disabled_reason, '') NOT LIKE 'by hand:%'`.execute(db);
  return rows.map((r) => ({
    kind: 'datasource_disabled',
    key: `datasource_disabled:${r.country}:${r.datasource_id}:${iso(r.disabled_at)}`,
    subject: `datasource ${r.datasource_id} of ${r.country.toUpperCase()} disabled`,
    detail: `${r.disabled_reason ?? 'no reason recorded'}; its rows are parked. Re-open with: lis datasource enable ${r.country} ${r.datasource_id}`,
    action: `Look at the feed's URLs (lis datasource show ${r.country}; the top reason says how they fail) and tell its owner. Once fixed: lis datasource enable ${r.country} ${r.datasource_id}`,
  }));
}

async function storesPaused(db: Db): Promise<Alert[]> {
  const { rows } = await sql<{ host: string; component: string; reason: string; since: Date }>`
    SELECT host, component, min(paused_reason) AS reason, min(paused_since) AS since FROM workers
     WHERE paused_reason IS NOT NULL AND stopped_at IS NULL GROUP BY host, component ORDER BY host, component`.execute(db);
  return rows.map((r) => ({
    kind: 'store_paused',
    key: `store_paused:${r.host}:${r.component}`,
    subject: `${r.component} on ${r.host} paused: a store is full or unwritable`,
    detail: `${r.reason} (since ${iso(r.since)}). No row is charged meanwhile; the stage waits.`,
    action: `Free space on that store (df -h; lis_cron_frontend --fs_check removes orphans; upkeep.pruneOriginals) or fix its mount/permissions. The stage resumes by itself.`,
  }));
}

/** How recent an S3 trouble of ours must be for its alert (s3_refused, s3_unavailable) to go on: it ends this long after the last. */
const S3_QUIET_MINUTES = 15;

/**
 * A datasource whose S3 originals S3 refused us lately (the stages' outcomes per minute, datasource_minutes):
 * our credentials or config, not its images. Each such row is given back uncharged and tried again, so nothing
 * else would tell: the stage's error rate needs a hundred rows and a fifth of them.
 */
async function s3Refused(db: Db): Promise<Alert[]> {
  const { rows } = await sql<{ country: string; datasource_id: number; n: number; last: Date }>`
    SELECT country, datasource_id, sum(n)::int AS n, max(minute) AS last FROM datasource_minutes
     WHERE error_class = 's3_refused' AND minute > now() - make_interval(mins => ${S3_QUIET_MINUTES})
     GROUP BY country, datasource_id ORDER BY country, datasource_id`.execute(db);
  return rows.map((r) => ({
    kind: 's3_refused',
    key: `s3_refused:${r.country}:${r.datasource_id}`,
    subject: `S3 refuses us the originals of ${r.country.toUpperCase()} datasource ${r.datasource_id}`,
    detail: `${r.n} rows refused in the last ${S3_QUIET_MINUTES} min (the last in the minute of ${iso(r.last)}): S3 said no to our credentials or config for their bucket, not to the images. Each is given back uncharged and tried again after queue.oursRetrySeconds.`,
    action: `The rows' reason names the bucket (lis_metrics --country ${r.country}, or the status page's lookup). Fix its imaged.s3 entry (key id, secret, region, endpoint) or the bucket's policy (s3:GetObject; s3:ListBucket too, so that a missing key says NoSuchKey), then restart the daemons that read it.`,
  }));
}

/** Rows of each datasource given back for an S3 outage of ours that are looked at to learn which buckets it is. */
const S3_UNAVAILABLE_SAMPLE = 50;

/**
 * A bucket we operate (imaged.s3 operatedBy "us") whose endpoint is down or failing: rows of datasources given
 * back `s3_unavailable` lately (datasource_minutes, as for s3_refused), and the bucket and cause from the newest
 * of those rows still waiting (their reason names the bucket first: src/failure/s3-unavailable.ts). One alert a
 * bucket, however many datasources and countries read it: one MinIO down is one trouble. The sample looks only
 * at waiting downloads of the datasources that had such outcomes, so nothing is read when nothing failed.
 */
async function s3Unavailable(db: Db, downMinutes: number): Promise<Alert[]> {
  // Failures of the last S3_QUIET_MINUTES, of an outage that has lasted downMinutes: its first failure at least that
  // long before its last (the rows are tried again every queue.oursRetrySeconds while it lasts). The minutes are
  // read as far back as both, so an outage that started before the quiet window still counts from its start.
  const { rows } = await sql<{ bucket: string; reason: string; datasources: string[]; n: number }>`
    WITH recent AS (
      SELECT country, datasource_id,
             (sum(n) FILTER (WHERE minute > now() - make_interval(mins => ${S3_QUIET_MINUTES})))::int AS n
        FROM datasource_minutes
       WHERE error_class = 's3_unavailable' AND minute > now() - make_interval(mins => ${S3_QUIET_MINUTES + downMinutes})
       GROUP BY country, datasource_id
      HAVING max(minute) > now() - make_interval(mins => ${S3_QUIET_MINUTES})
         AND max(minute) - min(minute) >= make_interval(mins => ${downMinutes})),
    waiting AS (
      SELECT r.country, r.datasource_id, r.n, w.last_error, w.updated_at, substring(w.last_error from ${S3_UNAVAILABLE_BUCKET}) AS bucket
        FROM recent r
        CROSS JOIN LATERAL (
          SELECT li.last_error, li.updated_at FROM live_images li
           WHERE li.country = r.country AND li.stage = 'download' AND li.state = 'waiting'
             AND li.datasource_id = r.datasource_id AND li.last_error_class = 's3_unavailable'
           LIMIT ${S3_UNAVAILABLE_SAMPLE}) w)
    SELECT bucket,
           (array_agg(last_error ORDER BY updated_at DESC))[1] AS reason,
           array_agg(DISTINCT upper(country) || ' datasource ' || datasource_id) AS datasources,
           sum(n)::int AS n
      FROM (SELECT DISTINCT ON (country, datasource_id, bucket) * FROM waiting WHERE bucket IS NOT NULL
             ORDER BY country, datasource_id, bucket, updated_at DESC) b
     GROUP BY bucket ORDER BY bucket`.execute(db);
  return rows.map((r) => ({
    kind: 's3_unavailable',
    key: `s3_unavailable:${r.bucket}`,
    subject: `S3 bucket ${r.bucket} unavailable (operated by us): rows wait`,
    detail: `${r.reason}. Rows of ${r.datasources.join(', ')} read it (${r.n} given back in the last ${S3_QUIET_MINUTES} min): each is given back uncharged and tried again after queue.oursRetrySeconds; no attempt is counted and no datasource is disabled for it. lis_imaged answers 503 for them meanwhile.`,
    action: `Bring the bucket's endpoint back (the reason names it: the MinIO server, its disk, its network, its TLS certificate); the rows go on by themselves. If this bucket is not ours but a feed's own, say so in its imaged.s3 entry ("operatedBy": "source") and restart the daemons: its outages are then charged to its rows and datasource.`,
  }));
}

/** Our way out, failing: classes given back uncharged because our network, our DNS resolver or our proxy failed (src/download). */
const OUR_WAY_OUT = ['network_unavailable', 'dns_unavailable', 'proxy_down'];

/** What each class says our trouble is, for the subject. */
const WAY_OUT_TROUBLE: Record<string, string> = {
  network_unavailable: 'our network is unavailable',
  dns_unavailable: 'our DNS resolver is unavailable',
  proxy_down: 'our download proxy is unavailable',
};

/**
 * Downloads given back because our own way out failed (OUR_WAY_OUT), lately and for at least downMinutes: the
 * stages' outcomes per minute (datasource_minutes, which lis_imaged's downloads reach too), as for s3_unavailable.
 * One alert a class, whatever the countries and datasources: one dead uplink is one trouble. The cause in the
 * words of the newest of a sample of the rows still waiting for it (each reason says what was asked and what did
 * not answer). The stage's error rate no longer counts these rows (ownedByStageErrorRate): this says what it is.
 */
async function networkDown(db: Db, downMinutes: number): Promise<Alert[]> {
  const { rows } = await sql<{ error_class: string; n: number; countries: string[]; since: Date; reason: string | null }>`
    WITH recent AS (
      SELECT error_class, country,
             (sum(n) FILTER (WHERE minute > now() - make_interval(mins => ${S3_QUIET_MINUTES})))::int AS n,
             min(minute) AS since, max(minute) AS last
        FROM datasource_minutes
       WHERE stage = 'download' AND error_class = ANY(${OUR_WAY_OUT}::text[])
         AND minute > now() - make_interval(mins => ${S3_QUIET_MINUTES + downMinutes})
       GROUP BY error_class, country
      HAVING max(minute) > now() - make_interval(mins => ${S3_QUIET_MINUTES})),
    classes AS (
      SELECT error_class, sum(n)::int AS n, array_agg(upper(country) ORDER BY country) AS countries, min(since) AS since
        FROM recent GROUP BY error_class
      -- An outage that has lasted downMinutes: its first failure at least that long before its last (the rows are
      -- tried again every queue.oursRetrySeconds while it lasts).
      HAVING max(last) - min(since) >= make_interval(mins => ${downMinutes}))
    SELECT c.error_class, c.n, c.countries, c.since,
           (SELECT w.last_error FROM recent r
              CROSS JOIN LATERAL (
                SELECT li.last_error, li.updated_at FROM live_images li
                 WHERE li.country = r.country AND li.stage = 'download' AND li.state = 'waiting' AND li.last_error_class = r.error_class
                 LIMIT ${S3_UNAVAILABLE_SAMPLE}) w
             WHERE r.error_class = c.error_class ORDER BY w.updated_at DESC LIMIT 1) AS reason
      FROM classes c ORDER BY c.error_class`.execute(db);
  return rows.map((r) => ({
    kind: 'network_down',
    key: `network_down:${r.error_class}`,
    subject: `${WAY_OUT_TROUBLE[r.error_class] ?? r.error_class}: downloads wait`,
    detail: `${r.reason ?? r.error_class}. ${r.n} downloads of ${r.countries.join(', ')} given back for it in the last ${S3_QUIET_MINUTES} min (since ${iso(r.since)}, class ${r.error_class}): each is tried again after queue.oursRetrySeconds, uncharged; no attempt is counted and no datasource is disabled for it. lis_imaged answers 503 for the images it would fetch meanwhile.`,
    action: `On the hosts running lis_downloadd (their log says which: grep ${r.error_class} downloadd.log): check the way out (ip route; ping the gateway; a DNS query to the resolver in /etc/resolv.conf; the proxy in download.proxy). The rows go on by themselves once it works. Give download.uplinkProbeTargets a host outside that always answers, so that a dead uplink is told from slow sources from the first minute.`,
  }));
}

async function frontendsDown(db: Db, minutes: number): Promise<Alert[]> {
  const { rows } = await sql<{ name: string; target: string; down_since: Date; down_reason: string | null; down_host: string | null }>`
    SELECT name, target, down_since, down_reason, down_host FROM frontends
     WHERE enabled AND down_since IS NOT NULL AND down_since < now() - make_interval(secs => ${minutes * 60}::float8)`.execute(db);
  return rows.map((r) => ({
    kind: 'frontend_down',
    key: `frontend_down:${r.name}:${iso(r.down_since)}`,
    subject: `frontend ${r.name} unreachable for over ${minutes} min`,
    detail: `${r.name} (${r.target}) down since ${iso(r.down_since)}${r.down_host ? ` for lis_pusherd on ${r.down_host}` : ''}: ${r.down_reason ?? 'no reason recorded'}. Only its own pushes wait; the other frontends get everything.`,
    action: `Check the host, its rsync daemon or sshd, and its disk${r.down_host ? `, and that it lets ${r.down_host} in (hosts allow, auth users and the password file, authorized_keys): another pushing host may reach it` : ''}. Once it answers, backfill catches it up. Gone for good: lis frontend disable ${r.name}`,
  }));
}

async function upkeepFailed(db: Db): Promise<Alert[]> {
  const { rows } = await sql<{ id: string; country: string | null; subject: string | null; detail: string; at: Date }>`
    SELECT id::text, country, subject, detail, at FROM manager_events
     WHERE check_name = 'upkeep' AND detail LIKE 'failed:%' AND at > ${LOOKBACK} ORDER BY id`.execute(db);
  return rows.map((r) => {
    const host = upkeepHost(r);
    return {
      kind: 'upkeep_failed',
      key: `upkeep_failed:${r.subject ?? r.country ?? 'all'}:${r.id}`,
      subject: `weekly upkeep failed${r.country ? ` for ${r.country.toUpperCase()}` : ''}${host ? ` on ${host}` : ''}`,
      detail: `${r.detail.replace(/^failed:\s*/, '')} (at ${iso(r.at)})`,
      action: `Read cron_frontend.error.log${host ? ` on ${host}` : ''}, fix the cause (a frontend unreachable, a store of that host, the database), then run lis_cron_frontend --all there again. Until then unlisted images are not purged.`,
    };
  });
}

/**
 * The host whose upkeep run an outcome is (each host runs its own): its subject. Outcomes recorded before
 * the host was (subject the country, or `all`) name none.
 */
function upkeepHost(r: { country: string | null; subject: string | null }): string | null {
  return r.subject && r.subject !== r.country && r.subject !== 'all' ? r.subject : null;
}

async function errorRates(db: Db, config: AlertsConfig): Promise<Alert[]> {
  const alerts: Alert[] = [];
  for (const s of await stageRates(db, config.errorRate)) {
    const verdict = judgeErrorRate(s, config.errorRate);
    if (!verdict) continue;
    const daemon = `${s.component}${s.country ? ` ${s.country.toUpperCase()}` : ''}`;
    alerts.push({
      kind: 'error_rate',
      key: `error_rate:${s.component}:${s.country ?? 'all'}`,
      subject: `${daemon}: error rate far above its usual`,
      detail: verdict,
      action: `See lis_metrics${s.country ? ` --country ${s.country}` : ''} (datasources and their top reasons). One feed: the manager disables it when it crosses manager.badDatasource. Our own fault (a store, the network, a frontend): fix it.`,
    });
  }
  return alerts;
}

/** Troubles that end by themselves, and what their ending means. */
const RECOVERY: Partial<Record<AlertKind, string>> = {
  store_paused: 'no running worker of it is paused now (the store has room again or is writable, or the daemon was stopped)',
  frontend_down: 'it takes pushes again (or was disabled); backfill catches it up',
  s3_refused: `no row of it was refused for ${S3_QUIET_MINUTES} minutes (S3 lets us in again, or nothing asked)`,
  s3_unavailable: `no row waits on it any more (they were read once it was back), or none was given back for it for ${S3_QUIET_MINUTES} minutes (nothing asked)`,
  network_down: `no download was given back for it for ${S3_QUIET_MINUTES} minutes (the way out works again, or nothing asked)`,
  // Not error_rate: a rate hovering at the line would fire and recover every few minutes; it keeps dedupeMinutes.
};

/**
 * A "recovered" notice for each trouble of these kinds that was told and is
 * no longer found. Sending it sets the told trouble aside (deliverAlerts), so
 * that the same trouble coming back is told again, however soon.
 */
async function recoveries(db: Db, kinds: AlertKind[], firing: Alert[], dedupeMinutes: number): Promise<Alert[]> {
  const ending = kinds.filter((k) => RECOVERY[k]);
  if (ending.length === 0) return [];
  const { rows } = await sql<{ key: string; kind: AlertKind; subject: string; sent_at: Date }>`
    SELECT key, kind, subject, sent_at FROM alerts_sent
     WHERE kind = ANY(${ending}::text[]) AND NOT (key = ANY(${firing.map((a) => a.key)}::text[]))
       AND key NOT LIKE '%:recovered:%' AND key NOT LIKE '%:ended:%' AND delivered_at IS NOT NULL
       -- A trouble that lasts is told again each dedupe window; one told before both windows ended long ago.
       AND sent_at > now() - make_interval(secs => ${Math.max(24 * 60, dedupeMinutes) * 60}::float8) ORDER BY sent_at`.execute(db);
  return rows.map((r) => ({
    kind: r.kind,
    key: `${r.key}:recovered:${iso(r.sent_at)}`,
    recovers: r.key,
    subject: `recovered: ${r.subject}`,
    detail: `Told at ${iso(r.sent_at)}; now ${RECOVERY[r.kind]}.`,
    action: 'Nothing to do. Should it come back, it is told again.',
  }));
}

/** Everything operators must be told now (before de-duplication), of the kinds asked for. */
export async function findAlerts(db: Db, config: AlertsConfig, kinds?: AlertKind[]): Promise<Alert[]> {
  const want = (k: AlertKind) => !kinds || kinds.includes(k);
  const found: Alert[] = [];
  if (want('datasource_disabled')) found.push(...(await datasourcesDisabled(db)));
  if (want('store_paused')) found.push(...(await storesPaused(db)));
  if (want('frontend_down')) found.push(...(await frontendsDown(db, config.frontendDownMinutes)));
  if (want('s3_refused')) found.push(...(await s3Refused(db)));
  if (want('s3_unavailable')) found.push(...(await s3Unavailable(db, config.s3DownMinutes)));
  if (want('network_down')) found.push(...(await networkDown(db, config.networkDownMinutes)));
  if (want('worker_died')) found.push(...(await workersDied(db)));
  if (want('upkeep_failed')) found.push(...(await upkeepFailed(db)));
  if (want('error_rate')) found.push(...(await errorRates(db, config)));
  found.push(...(await recoveries(db, kinds ?? [...ALERT_KINDS], found, config.dedupeMinutes)));
  return found;
}
