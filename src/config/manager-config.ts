import cron from 'node-cron';
import * as z from 'zod';

const cronExpression = z.string().refine((v) => cron.validate(v), 'not a valid cron expression (e.g. "*/10 * * * *", or with seconds "*/30 * * * * *")');

/** lis_managerd: when each check runs, and the thresholds it heals by. */
export const managerConfigSchema = z.strictObject({
  /** node-cron expressions (with an optional seconds field); null switches a check off in service mode. */
  schedule: z
    .strictObject({
      stuck_jobs: cronExpression.nullable().default('*/30 * * * * *'),
      bad_retry_jobs: cronExpression.nullable().default('*/5 * * * *'),
      bad_datasources: cronExpression.nullable().default('*/10 * * * *'),
      /** Claimable rows missing from claimable_rows (unlocked by a hand-run UPDATE) listed again; reads the backlog. */
      unlisted_rows: cronExpression.nullable().default('*/5 * * * *'),
      /** Rows lis_imaged made for origin keys the origin lacks, that their request could not delete; reads the failed rows. */
      missed_origin_rows: cronExpression.nullable().default('*/5 * * * *'),
      /** Looks for what operators must be told (alerts.*) and tells them. */
      alerts: cronExpression.nullable().default('* * * * *'),
      /** The weekly upkeep (lis_cron_frontend --all), when the manager runs it instead of cron; null: cron runs it. */
      cron_frontend: cronExpression.nullable().default(null),
    })
    .prefault({}),
  /** A worker whose heartbeat is older than this is dead: its rows are released. Keep it several heartbeats long. */
  staleWorkerSeconds: z.number().int().min(5).default(60),
  /** A host with no live worker for this long is gone: rows whose files sit only in its stores are downloaded again elsewhere. */
  hostGoneHours: z.number().positive().default(24),
  /** Rows failing this many times in a row with the same reason are parked as failed even with attempts left. */
  sameReasonLimit: z.number().int().min(2).default(4),
  badDatasource: z
    .strictObject({
      /** Window of recent work the failure rate is measured over. */
      windowHours: z.number().positive().default(6),
      /** No verdict below this many rows worked in the window. */
      minAttempts: z.number().int().positive().default(50),
      /** Disable at or above this share of failures. */
      failureRate: z.number().gt(0).max(1).default(0.9),
    })
    .prefault({}),
  /** Deprecated: alerts.webhookUrl. Where operators are told, besides the error log: a URL that gets a JSON POST. */
  webhookUrl: z
    .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
    .nullable()
    .default(null),
  /** How long worker_minutes and manager_events are kept. */
  keepStatsDays: z.number().positive().default(14),
});

/** lis_cron_frontend: the weekly upkeep. */
export const upkeepConfigSchema = z.strictObject({
  /** Images the ETL has not seen for this many days are purged from frontends, stores and table. */
  purgeAfterDays: z.number().positive().default(30),
  /** `after_live`: originals of rows live for keepOriginalsDays are deleted (a refresh downloads again); `never`: kept. */
  pruneOriginals: z.enum(['after_live', 'never']).default('never'),
  keepOriginalsDays: z.number().nonnegative().default(7),
  /**
   * lis_cron_frontend logs, this often while a country's db_scan or fs_check runs, that it is still running
   * (its scans have no query bound, so a frozen database would otherwise leave the log silent). 10 minutes:
   * a weekly scan of millions of rows runs for minutes, and a line a minute would be noise.
   */
  progressMinutes: z.number().positive().max(1440).default(10),
  /**
   * lis_cron_frontend cuts its run when the database has answered none of its probes (`SELECT 1` on a connection
   * of their own, three at least, bounded by database.connectTimeoutSeconds and queryTimeoutSeconds) for this
   * long: a server frozen or a host hung, which would hold the run and its locks for ever, where a busy server
   * (a long purge, a wait on row locks) answers them and is never cut. 5 minutes: a server restart or a
   * failover is over well within it, and the weekly run is cut long before anyone would look.
   */
  frozenDatabaseMinutes: z.number().positive().max(1440).default(5),
});

/** servicectl: pid and ready files, how long a start waits for ready and a stop before SIGKILL. */
export const servicesConfigSchema = z.strictObject({
  runDir: z.string().default('./var/run'),
  stopTimeoutSeconds: z.number().positive().default(60),
  /** How long `servicectl start` waits for a daemon to say it is ready (registered, listening) before giving up on it. */
  startTimeoutSeconds: z.number().positive().default(120),
});
