import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { LOOKBACK, type Alert } from './alert.ts';

/** A worker stuck_jobs released (manager_events), as the alert tells it. */
export interface WorkerDeath {
  /** The event's id: a lone death's alert key. */
  id: string;
  /** The worker's id. */
  subject: string | null;
  detail: string;
  at: Date;
  /** Rows it held, released. */
  held: number;
  component: string | null;
  country: string | null;
  /** It beats again since (registered anew): stalled, not dead. */
  back: boolean;
}

/**
 * Deaths recorded this close one after another are told as one alert. One stuck_jobs run releases its workers one
 * transaction after another, within seconds; workers that stop beating together were stopped by one cause (a
 * database outage or a restore from a backup, a host or VM paused): after a restore, every worker registered in
 * the backup and gone since was found dead in one run, and each was a mail of its own, up to alerts.maxPerHour.
 */
export const TOGETHER_MS = 10_000;

/**
 * A released worker's next heartbeat (every queue.heartbeatSeconds, 10 s) registers it again: a death is told
 * once this old, so that stuck_jobs and the alerts running in the same second do not call a living worker dead.
 */
const DEATH_GRACE_SECONDS = 30;

/**
 * `deaths` (ordered by time) in runs, each death within TOGETHER_MS of the one before it. Pure.
 */
export function deathsTogether<T extends { at: Date }>(deaths: T[]): T[][] {
  const runs: T[][] = [];
  for (const death of deaths) {
    const run = runs.at(-1);
    const last = run?.at(-1);
    if (run && last && death.at.getTime() - last.at.getTime() <= TOGETHER_MS) run.push(death);
    else runs.push([death]);
  }
  return runs;
}

function workerLog(component: string | null, country: string | null): string {
  return component ? `var/log/${component}${country ? `.${country}` : ''}.error.log` : 'var/log/<component>.<country>.error.log';
}

function startCommand(component: string | null, country: string | null): string {
  return component ? `servicectl start imagesys-${component}${country ? ` --country ${country}` : ''}` : 'servicectl start imagesys-<component>';
}

/** Where a worker's errors are logged, and how to start it again (its log file and service are per component and country). */
export function workerDiedAction(component: string | null, country: string | null): string {
  return `Read its log on that host (${workerLog(component, country)}), then start it again (${startCommand(component, country)}). Repeated deaths: out of memory (dmesg) or a crash to report.`;
}

const iso = (d: Date) => d.toISOString();

/** A lone death's alert. Pure. */
function oneDeath(r: WorkerDeath): Alert {
  if (r.back)
    return {
      kind: 'worker_died',
      key: `worker_died:${r.id}`,
      subject: `worker ${r.subject ?? '?'} stalled and is back`,
      detail: `${r.detail} (at ${iso(r.at)}); ${r.held > 0 ? 'its rows went back to the queue' : 'it held no rows, so none waited for it'}, and it beats again and works.`,
      action: `Nothing to start. Several workers at once: the database or their host stalled (a database outage, a paused VM); one alone: ${r.held > 0 ? 'it hung on its work' : 'its heartbeat hung'}, see its log (${workerLog(r.component, r.country)}).`,
    };
  return {
    kind: 'worker_died',
    key: `worker_died:${r.id}`,
    subject: `worker ${r.subject ?? '?'} died`,
    detail: `${r.detail} (at ${iso(r.at)}); ${r.held > 0 ? 'its rows are back in the queue' : 'it held no rows'}.`,
    action: workerDiedAction(r.component, r.country),
  };
}

/** Workers a several-death alert names one by one; the rest are counted (lis worker-report lists them all). */
const LISTED = 20;

/**
 * Several deaths together, told once: keyed by the first (so that a run told as it grew is not told again), each
 * worker named with what became of it, and what to start once per service. Pure.
 */
function deathsAtOnce(run: WorkerDeath[]): Alert {
  const back = run.filter((r) => r.back).length;
  const died = run.length - back;
  const subject =
    back === 0
      ? `${run.length} workers died at once`
      : died === 0
        ? `${run.length} workers stalled at once and are back`
        : `${run.length} workers stalled at once: ${back} back, ${died} died`;
  const held = run.reduce((sum, r) => sum + r.held, 0);
  const listed = run.slice(0, LISTED).map((r) => `${r.subject ?? '?'} ${r.back ? 'is back' : 'died'}: ${r.detail}`);
  const more = run.length > LISTED ? `; and ${run.length - LISTED} more (lis worker-report)` : '';
  const starts = [...new Set(run.filter((r) => !r.back).map((r) => startCommand(r.component, r.country)))];
  const logs = [...new Set(run.filter((r) => !r.back).map((r) => workerLog(r.component, r.country)))];
  return {
    kind: 'worker_died',
    key: `worker_died:${run[0].id}`,
    subject,
    detail:
      `Between ${iso(run[0].at)} and ${iso(run.at(-1)!.at)}: ${listed.join('; ')}${more}. ` +
      `${held > 0 ? `${held} rows they held are back in the queue` : 'they held no rows'}.`,
    action:
      'Several workers at once: one cause stopped them, not each its own fault (the database down or restored from a backup, ' +
      `their host or VM paused or restarted). ${
        died === 0
          ? 'Nothing to start: they beat again and work.'
          : `Those that died: see their logs on their hosts (${logs.join(', ')}), then start them again (${starts.join('; ')}); after a restore, workers of the backup that no longer run are told as dead, and there is nothing to start for them.`
      }`,
  };
}

/** The deaths and stalls stuck_jobs recorded, as alerts: one for each lone death, one for each run of deaths together. */
export async function workersDied(db: Db): Promise<Alert[]> {
  // Every recent death, also those not yet past the grace: a run is told only once its newest death is, so a run
  // is never told before its last member (which would be left out for good: the run's key is its first's).
  const { rows } = await sql<WorkerDeath & { ripe: boolean }>`
    SELECT e.id::text, e.subject, e.detail, e.at, e.rows AS held, w.component, w.country,
           coalesce(w.stopped_at IS NULL AND w.heartbeat_at > e.at, false) AS back,
           e.at <= now() - make_interval(secs => ${DEATH_GRACE_SECONDS}) AS ripe
      FROM manager_events e LEFT JOIN workers w ON w.id = e.subject
     WHERE e.check_name = 'stuck_jobs' AND e.at > ${LOOKBACK} ORDER BY e.at, e.id`.execute(db);
  return deathsTogether(rows)
    .filter((run) => run.at(-1)!.ripe)
    .map((run) => (run.length === 1 ? oneDeath(run[0]) : deathsAtOnce(run)));
}
