import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/create-logger.ts';
import { listMissingClaimable } from '../queue/claimable-rows.ts';
import { describeBadRetry, parkBadRetryJobs } from './bad-retry-jobs.ts';
import { disableBadDatasources } from './bad-datasources.ts';
import { recordEvent } from './manager-events.ts';
import { settleMissedOriginRows } from './missed-origin-rows.ts';
import { runAlerts } from './alerts-check.ts';
import { redownloadFromGoneHosts, releaseLeftRows, releaseStuckJobs } from './stuck-jobs.ts';

export const CHECKS = ['stuck_jobs', 'bad_retry_jobs', 'bad_datasources', 'unlisted_rows', 'missed_origin_rows', 'alerts'] as const;
export type Check = (typeof CHECKS)[number];

export interface CheckContext {
  config: LisConfig;
  db: Db;
  log: Logger;
  country?: string;
}

/** Runs one check once, logs what it did, and returns a one-line summary. */
export async function runCheck(check: Check, ctx: CheckContext): Promise<string> {
  const { config, db, log, country } = ctx;
  const scope = { scope: `Manager::${check}` };
  switch (check) {
    case 'stuck_jobs': {
      const released = await releaseStuckJobs(
        db,
        config.manager.staleWorkerSeconds,
        country,
        config.queue.progressTimeoutSeconds + config.manager.staleWorkerSeconds,
      );
      for (const w of released)
        log.warn(
          `${w.rows > 0 ? `Released ${w.rows} rows held by ${w.workerId}` : `Marked ${w.workerId} stopped, holding no rows`} (${w.component} on ${w.host}, silent for ${w.silentSeconds}s)`,
          scope,
        );
      const left = await releaseLeftRows(db, country);
      for (const w of left) log.warn(`Released ${w.rows} rows ${w.workerId} (${w.component} on ${w.host}) still held as it stopped`, scope);
      const gone = config.stores.shared ? [] : await redownloadFromGoneHosts(db, config.manager.hostGoneHours, config.host, country);
      for (const g of gone)
        log.warn(
          `Host ${g.host} gone for over ${config.manager.hostGoneHours}h: ${g.rows} rows sent back to download${g.frontends ? `; frontends it had marked down cleared: ${g.frontends.join(', ')}` : ''}`,
          scope,
        );
      const rows = released.reduce((n, w) => n + w.rows, 0);
      const leftRows = left.reduce((n, w) => n + w.rows, 0);
      return `stuck_jobs: ${released.length} dead workers, ${rows} rows released; ${leftRows} rows stopped workers left held released; ${gone.length} gone hosts, ${gone.reduce((n, g) => n + g.rows, 0)} rows to download again`;
    }
    case 'bad_retry_jobs': {
      const r = await parkBadRetryJobs(db, { maxAttempts: config.queue.maxAttempts, sameReasonLimit: config.manager.sameReasonLimit, country });
      const summary = `bad_retry_jobs: ${describeBadRetry(r)}`;
      if (r.outOfAttempts + r.sameReason + r.originalMissing + r.thumbnailsMissing > 0) log.warn(summary, scope);
      return summary;
    }
    case 'bad_datasources': {
      const disabled = await disableBadDatasources(db, config.manager.badDatasource, country, (message) => log.error(message, scope));
      // Told at once, through the alerts (so the scheduled alerts check does not tell it again).
      if (disabled.length) await runAlerts(ctx, ['datasource_disabled']);
      return `bad_datasources: ${disabled.length} disabled${disabled.map((d) => ` (${d.country} ${d.datasourceId}: ${d.reason})`).join('')}`;
    }
    case 'alerts': {
      const r = await runAlerts(ctx);
      return `alerts: ${r.sent.length} sent, ${r.repeated} already sent, ${r.held.length} held back by the hourly cap, ${r.undelivered.length} undelivered (tried again next run)`;
    }
    case 'unlisted_rows': {
      const listed = await listMissingClaimable(db, country);
      const summary = `unlisted_rows: ${listed} claimable rows had no claim entry and were listed again`;
      // An alarm: every queue operation keeps claimable_rows itself, so this must never fire.
      if (listed > 0) {
        log.error(`${summary} (an UPDATE of live_images outside src/queue, or a rolled-back claim?)`, scope);
        await recordEvent(db, { check: 'unlisted_rows', country, rows: listed, detail: summary });
      }
      return summary;
    }
    case 'missed_origin_rows': {
      const deleted = await settleMissedOriginRows(db, country);
      return `missed_origin_rows: ${deleted} rows of origin keys the origin lacks deleted`;
    }
  }
}

/** Records the queue's depth now, for the status page's chart over time. */
export async function sampleQueue(db: Db): Promise<void> {
  await sql`
    INSERT INTO queue_samples (at, country, stage, due, later, held)
    SELECT date_trunc('minute', now()), country, stage,
           count(*) FILTER (WHERE locked_by IS NULL AND next_attempt_at <= now()),
           count(*) FILTER (WHERE locked_by IS NULL AND next_attempt_at > now()),
           count(*) FILTER (WHERE locked_by IS NOT NULL)
      FROM live_images WHERE state = 'waiting' AND stage IN ('download', 'thumbnail', 'push')
     GROUP BY country, stage
    ON CONFLICT (at, country, stage) DO UPDATE SET due = EXCLUDED.due, later = EXCLUDED.later, held = EXCLUDED.held`.execute(db);
}

/** Drops per-minute figures and events older than `days`. */
export async function pruneStats(db: Db, days: number): Promise<void> {
  const cutoff = sql`now() - make_interval(days => ${Math.ceil(days)}::int)`;
  await sql`DELETE FROM worker_minutes WHERE minute < ${cutoff}`.execute(db);
  await sql`DELETE FROM datasource_minutes WHERE minute < ${cutoff}`.execute(db);
  await sql`DELETE FROM manager_events WHERE at < ${cutoff}`.execute(db);
  await sql`DELETE FROM queue_samples WHERE at < ${cutoff}`.execute(db);
  await sql`DELETE FROM alerts_sent WHERE sent_at < ${cutoff}`.execute(db);
  // Each host's last worker is kept, however old: it is how stuck_jobs knows a host is gone (manager.hostGoneHours),
  // and rows naming a host gone longer than this (reworked since: a rethumbnail, a re-push) must still be sent back.
  await sql`DELETE FROM workers w WHERE w.stopped_at < ${cutoff}
              AND EXISTS (SELECT 1 FROM workers n WHERE n.host = w.host AND (n.heartbeat_at, n.id) > (w.heartbeat_at, w.id))`.execute(db);
}
