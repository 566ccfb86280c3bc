import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { releaseAllHeldBy } from '../queue/release-rows.ts';
import { optionalFilter } from '../queue/move-rows.ts';
import { sendBackRows } from '../queue/send-back-rows.ts';
import { recordEvent } from './manager-events.ts';

export interface ReleasedWorker {
  workerId: string;
  component: string;
  host: string;
  /** Seconds since its last heartbeat. */
  silentSeconds: number;
  rows: number;
}

/**
 * Releases the rows held by workers whose heartbeat has gone stale (killed,
 * crashed, host gone), or that beat but have made no progress on the rows
 * they hold for `wedgedSeconds`, and marks those workers stopped (their next
 * heartbeat sees it and drops the chunk instead of reviving). The workers table is read first: the scan of
 * held rows only runs when a dead worker may hold some.
 */
export async function releaseStuckJobs(db: Db, staleSeconds: number, country?: string, wedgedSeconds?: number): Promise<ReleasedWorker[]> {
  // Silence is counted from the database's start at the earliest: while the server was down (a restart, an
  // upgrade) no worker could beat or record progress, and that outage is ours, not theirs. Without this, the
  // first check after a restart of over staleSeconds found every worker dead, released every chunk and
  // raised worker_died for each. Asked again in the marking transaction: one that beat since is left alone.
  const since = (column: 'heartbeat_at' | 'progress_at') => sql`greatest(${sql.ref(column)}, pg_postmaster_start_time())`;
  // Wedged: it beats but has made no progress on the rows it holds for wedgedSeconds (liveness by progress).
  const wedged =
    wedgedSeconds === undefined
      ? sql<boolean>`false`
      : sql<boolean>`(holding > 0 AND ${since('progress_at')} < now() - make_interval(secs => ${wedgedSeconds}))`;
  const silent = sql<boolean>`(${since('heartbeat_at')} < now() - make_interval(secs => ${staleSeconds}) OR ${wedged})`;
  const dead = await db
    .selectFrom('workers')
    .select(['id', 'component', 'host', sql<number>`extract(epoch FROM now() - least(heartbeat_at, coalesce(progress_at, heartbeat_at)))::float8`.as('silent')])
    .where('stopped_at', 'is', null)
    .where(silent)
    .$if(country !== undefined, (q) => q.where('country', '=', country!))
    .execute();
  const released: ReleasedWorker[] = [];
  for (const worker of dead) {
    // One transaction for the marking, the release and its event: a manager killed half-way leaves
    // either all three or none, and of two managers that find the same dead worker only the first
    // (the one that marks it stopped) releases and records. The mark asks again whether it is silent
    // (under the row lock): a slow worker that beat since the read above keeps its rows.
    const rows = await db.transaction().execute(async (trx) => {
      const marked = await trx
        .updateTable('workers')
        .set({ stopped_at: sql`now()`, holding: 0 })
        .where('id', '=', worker.id)
        .where('stopped_at', 'is', null)
        .where(silent)
        .executeTakeFirst();
      if (Number(marked.numUpdatedRows) === 0) return null;
      const count = await releaseAllHeldBy(trx, worker.id);
      await recordEvent(trx, {
        check: 'stuck_jobs',
        country,
        subject: worker.id,
        rows: count,
        detail: stalledDetail(count, worker.id, worker.component, Math.round(worker.silent)),
      });
      return count;
    });
    if (rows !== null) released.push({ workerId: worker.id, component: worker.component, host: worker.host, silentSeconds: Math.round(worker.silent), rows });
  }
  return released;
}

/**
 * Pure: the event of a stalled worker stuck_jobs marked stopped. One that held nothing (an idle lis_imaged whose
 * heartbeat hung) was told "released 0 rows held by ...", and its alert that its rows went back to the queue.
 */
export function stalledDetail(rows: number, workerId: string, component: string, silentSeconds: number): string {
  const silent = `silent or without progress for ${silentSeconds}s`;
  return rows > 0 ? `released ${rows} rows held by ${workerId} (${component}), ${silent}` : `${workerId} (${component}) held no rows, ${silent}`;
}

export interface LeftRows {
  workerId: string;
  component: string;
  host: string;
  rows: number;
}

/**
 * Releases the rows of workers that stopped saying they may still hold some (markStopped's `leftHeld`: the
 * database refused or left unanswered their last give-back, e.g. it was restarting as they stopped). Not a
 * death: recorded as `left_rows`, which no alert reads (the worker stopped as asked; the database's fault is
 * told by its own symptoms). One transaction per worker, under its row's lock: of two managers, one releases.
 */
export async function releaseLeftRows(db: Db, country?: string): Promise<LeftRows[]> {
  const stopped = await db
    .selectFrom('workers')
    .select(['id', 'component', 'host'])
    .where('stopped_at', 'is not', null)
    .where('holding', '>', 0)
    .$if(country !== undefined, (q) => q.where('country', '=', country!))
    .execute();
  const out: LeftRows[] = [];
  for (const worker of stopped) {
    const rows = await db.transaction().execute(async (trx) => {
      const marked = await trx
        .updateTable('workers')
        .set({ holding: 0 })
        .where('id', '=', worker.id)
        .where('stopped_at', 'is not', null)
        .where('holding', '>', 0)
        .executeTakeFirst();
      if (Number(marked.numUpdatedRows) === 0) return null;
      const count = await releaseAllHeldBy(trx, worker.id);
      await recordEvent(trx, {
        check: 'left_rows',
        country,
        subject: worker.id,
        rows: count,
        detail: `released ${count} rows ${worker.id} (${worker.component}) still held as it stopped (the database did not take them back then)`,
      });
      return count;
    });
    if (rows !== null) out.push({ workerId: worker.id, component: worker.component, host: worker.host, rows });
  }
  return out;
}

/** Advisory-lock namespace of host_gone ('gone'), keyed by the host: one manager at a time handles a gone host. */
const GONE_LOCK = 0x676f6e65;

/**
 * Hosts other than `thisHost` none of whose workers has beaten for `goneHours` (seconds, not whole hours: the
 * config allows 0.5), and whether they were handled for this scope since: a host_gone event for all countries
 * covers every scope, one for a country covers that country's.
 */
function goneHosts(db: Db, goneHours: number, thisHost: string, country: string | undefined, only?: string) {
  const handled = country === undefined ? sql`e.country IS NULL` : sql`(e.country IS NULL OR e.country = ${country})`;
  return sql<{ host: string; handled: boolean }>`
    SELECT w.host,
           EXISTS (SELECT 1 FROM manager_events e
                    WHERE e.check_name = 'host_gone' AND e.subject = w.host AND ${handled} AND e.at > max(w.heartbeat_at)) AS handled
      FROM workers w
     WHERE w.host <> ${thisHost} AND ${only === undefined ? sql`true` : sql`w.host = ${only}`}
     GROUP BY w.host
    HAVING max(w.heartbeat_at) < now() - make_interval(secs => ${goneHours * 3600}::float8)`.execute(db);
}

/**
 * Rows of `host` waiting in thumbnail or push, found through claimable_rows (its index leads with country, stage,
 * store_host, so this is a few index probes per country, not a scan of live_images): what reaches those stages
 * after the host was handled, every 30 s at no cost worth counting.
 */
function waitingOnHost(host: string, country: string | undefined) {
  const countries =
    country === undefined
      ? sql`(WITH RECURSIVE k AS (SELECT min(country) AS country FROM claimable_rows
                                  UNION ALL
                                  SELECT (SELECT min(c.country) FROM claimable_rows c WHERE c.country > k.country) FROM k WHERE k.country IS NOT NULL)
             SELECT country FROM k WHERE country IS NOT NULL)`
      : sql`(SELECT ${country}::text)`;
  return sql`li.id = ANY(ARRAY(SELECT c.id FROM claimable_rows c
                                WHERE c.country IN ${countries} AND c.stage IN ('thumbnail', 'push') AND c.store_host = ${host}))
             AND li.store_host = ${host} AND li.stage IN ('thumbnail', 'push') AND li.state = 'waiting' AND li.locked_by IS NULL`;
}

export interface GoneHost {
  host: string;
  /** Rows sent back to download. */
  rows: number;
  /** Frontends it had marked down (which only it could clear), cleared. */
  frontends?: string[];
}

/**
 * Rows whose files sit only in the stores of a host that has been gone for
 * `goneHours` (no worker of it has beaten since) are sent back to download,
 * where a live host will fetch them again: only the rows of `country` when
 * given (a manager run with --country acts on its country alone, as its other
 * checks do). The first time a gone host is found (per country; one recorded
 * for all countries covers each), every row of it in thumbnail or push, failed
 * ones too, is sent back, which reads the table once; after that, rows of it
 * that come to wait in those stages later (a `lis rethumbnail`, fs_check's
 * re-push of a live row a frontend lacks, a retry, a datasource enabled again)
 * are sent back at each run, as none of its daemons will ever claim them.
 * Shared stores (store_host '') are never affected. The frontends it had
 * marked down are cleared too: only it could clear them. `only`: that host
 * alone (`lis host gone`).
 */
export async function redownloadFromGoneHosts(db: Db, goneHours: number, thisHost: string, country?: string, only?: string): Promise<GoneHost[]> {
  const { rows: gone } = await goneHosts(db, goneHours, thisHost, country, only);
  const out: GoneHost[] = [];
  for (const { host } of gone) {
    // One transaction for the send-back and its event, under the host's lock, asking again whether the host
    // is gone and unhandled: two managers (two hosts) that found it gone at the same moment both sent back
    // (the second 0 rows) and both recorded and logged it.
    const rows = await db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(${GONE_LOCK}::int, hashtext(${host}))`.execute(trx);
      const [now] = (await goneHosts(trx, goneHours, thisHost, country, host)).rows;
      if (!now) return null;
      // Its marks of frontends down (only the host that marked one may clear it: frontend-health.ts). No pusher of it
      // will push again, and its rows go back to download: the mark stands for nothing that waits. Left, the frontend
      // showed down in `lis frontend list` and frontend_down was alerted every alerts.dedupeMinutes for ever, though
      // every live host pushed to it. Control rows before live_images rows (the queue's lock order).
      const { rows: cleared } = await sql<{ name: string }>`
        UPDATE frontends SET down_since = NULL, down_reason = NULL, down_host = NULL WHERE down_host = ${host} RETURNING name`.execute(trx);
      const count = await sendBackRows(trx, {
        where: now.handled
          ? waitingOnHost(host, country)
          : sql`li.store_host = ${host} AND ${optionalFilter('country', country)} AND li.stage IN ('thumbnail', 'push') AND (li.state = 'waiting' OR li.state = 'failed')`,
        to: 'download',
        reason: sql`'files were on ' || li.store_host || ', gone for over ' || ${goneHours}::text || 'h'`,
        errorClass: 'host_gone',
      });
      // Handled already and nothing came since: nothing to record (this runs every 30 s).
      if (now.handled && count === 0 && cleared.length === 0) return null;
      const scope = country === undefined ? '' : ` of ${country}`;
      await recordEvent(trx, {
        check: 'host_gone',
        country,
        subject: host,
        rows: count,
        detail: `host ${host} gone for over ${goneHours}h: ${count} rows${scope} sent back to download${cleared.length ? `; its marks of ${cleared.map((c) => c.name).join(', ')} down cleared` : ''}`,
      });
      return { count, frontends: cleared.map((c) => c.name) };
    });
    if (rows !== null) out.push({ host, rows: rows.count, ...(rows.frontends.length ? { frontends: rows.frontends } : {}) });
  }
  return out;
}
