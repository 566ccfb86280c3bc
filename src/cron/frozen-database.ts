import type { Alert } from '../alerts/alert.ts';
import { mailChannel } from '../alerts/mail-channel.ts';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { describeServer } from '../db/connection-failure.ts';
import { DatabaseFrozenError, errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { recordEvent } from '../manager/manager-events.ts';
import { notifyOperators } from '../manager/notify-operators.ts';
import { settledWithin } from '../util/settled-within.ts';
import type { Silence } from './database-watch.ts';

/** Pure: `20 s`, `5.2 min`. */
export function duration(ms: number): string {
  const seconds = ms / 1000;
  return seconds < 60 ? `${Math.round(seconds * 10) / 10} s` : `${Math.round((seconds / 60) * 10) / 10} min`;
}

/**
 * Pure: the error of a part cut for a silent database: for how long it said nothing, how it was asked, and
 * what was cut after how long (`at`: when it was judged frozen).
 */
export function frozenError(url: string, silence: Silence, what: string, partStarted: number, at: number): DatabaseFrozenError {
  // The probe's error names the server already, which the sentence does first.
  const last = errorMessage(silence.last).replace(/^the database at .* is not answering: /, '');
  return new DatabaseFrozenError(
    `the database at ${describeServer(url)} did not answer for ${duration(at - silence.since)} (${silence.failed} probes in a row, the last: ${last}): cut ${what} after ${duration(at - partStarted)}`,
    { cause: silence.last },
  );
}

/** Pure: the upkeep_failed alert for a run cut so, when no outcome could be recorded for the manager to tell. */
export function frozenAlert(host: string, country: string, detail: string, at: Date): Alert {
  return {
    kind: 'upkeep_failed',
    key: `upkeep_failed:${host}:database_frozen:${at.toISOString()}`,
    subject: `weekly upkeep failed for ${country.toUpperCase()} on ${host}: the database did not answer`,
    detail: `${detail} (at ${at.toISOString()})`,
    action: `Look at the database server: its process (stopped? \`ps -o stat\` says T), its host (hung? reachable?), its disk. Once it answers, run lis_cron_frontend --all on ${host} again. Until then unlisted images are not purged.`,
  };
}

/**
 * Records the run's outcome, whole or not at all (a transaction: a server that resumes later cannot commit
 * what we gave up on), if the database answers within `waitMs`. True when it did.
 */
async function recordWithin(db: Db, country: string, host: string, detail: string, waitMs: number): Promise<boolean> {
  let recorded = false;
  const recording = db
    .transaction()
    .execute((trx) => recordEvent(trx, { check: 'upkeep', country, subject: host, rows: 0, detail }))
    .then(() => (recorded = true));
  await settledWithin(recording, waitMs);
  return recorded;
}

/**
 * Tells of a run cut because the database answered nothing: the error log says what was cut and what is left,
 * and the outcome goes where the manager's upkeep_failed alert finds it; when the database cannot take it
 * (it is still silent, the likely case), the run tells operators itself, by the alerts' mail and webhook
 * (an alert the manager would never send: nothing of this run reaches the table).
 */
export async function tellDatabaseFrozen(
  ctx: { config: LisConfig; db: Db; log: Logger },
  country: string,
  error: DatabaseFrozenError,
  left: { notDone: string[]; lockHeld: boolean },
): Promise<void> {
  const { config, db, log } = ctx;
  const scope = { scope: 'CronFrontend::main', country };
  const notDone = left.notDone.length ? `; not done, the run having stopped: ${left.notDone.map((c) => c.toUpperCase()).join(', ')}` : '';
  const lock = left.lockHeld ? `; the lock of ${country.toUpperCase()}'s shared upkeep goes with its session` : '';
  const detail = `${error.message}. Its connections were closed: a statement in flight is rolled back or stands whole, as each change is one statement or one transaction${lock}${notDone}`;
  log.error(`${country.toUpperCase()}: ${detail}. The next run takes over once the database answers`, scope);
  if (await recordWithin(db, country, config.host, `failed: ${detail}`, config.database.stopWaitSeconds * 1000)) return;
  const webhookUrl = config.alerts.webhookUrl ?? config.manager.webhookUrl;
  const mail = mailChannel(config.alerts.smtp);
  try {
    const channels = { log, host: config.host, mail, webhookUrl, secrets: [webhookUrl, config.alerts.smtp.password] };
    await notifyOperators(channels, frozenAlert(config.host, country, detail, new Date()));
  } finally {
    mail?.close();
  }
}
