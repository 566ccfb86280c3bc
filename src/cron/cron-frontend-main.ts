import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { parseCountry } from '../config/country.ts';
import { configFileExposure } from '../config/config-file-exposure.ts';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import { closeDb, createDb, databaseUrl, type Db } from '../db/connect.ts';
import { openDatabase } from '../db/open-database.ts';
import { connectBound, serviceQueryBounds } from '../db/query-bounds.ts';
import { probeServer } from '../db/probe-server.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { cliProgram } from '../util/cli-program.ts';
import { DatabaseFrozenError, LisError, UsageError, errorMessage } from '../errors.ts';
import { closeLogger, createLogger } from '../log/create-logger.ts';
import { watchProgress } from './progress-watch.ts';
import { recordEvent } from '../manager/manager-events.ts';
import { acquirePidLock, LockHeldError } from '../util/pid-lock-file.ts';
import { hostNameClash } from '../daemon/host-name-clash.ts';
import { storeIdentities } from '../daemon/store-identity.ts';
import { takeClusterPart, type ClusterPart } from './cluster-lock.ts';
import { dbScan } from './db-scan.ts';
import { fsCheck } from './fs-check.ts';
import { sweepDeadRunsTempFolders } from './frontend-files.ts';
import { watchDatabase } from './database-watch.ts';
import { duration, frozenError, tellDatabaseFrozen } from './frozen-database.ts';
import { settledWithin } from '../util/settled-within.ts';

/** The weekly job runs behind the daemons: lowest CPU priority, and idle I/O class where ionice exists. */
function lowerPriority(): void {
  try {
    os.setPriority(19);
  } catch {
    // Not allowed: run at normal priority rather than not at all.
  }
  spawnSync('ionice', ['-c', '3', '-p', String(process.pid)], { stdio: 'ignore' });
}

async function countriesOf(db: Db): Promise<string[]> {
  const { rows } = await sql<{ country: string }>`
    WITH RECURSIVE c AS (
      (SELECT country FROM live_images ORDER BY country LIMIT 1)
      UNION ALL
      SELECT (SELECT l.country FROM live_images l WHERE l.country > c.country ORDER BY l.country LIMIT 1) FROM c WHERE c.country IS NOT NULL)
    SELECT country FROM c WHERE country IS NOT NULL`.execute(db);
  return rows.map((r) => r.country);
}

/**
 * Records one country's upkeep outcome on this host (the subject: each host runs its own, and an alert must say
 * which failed); a database that fails here must not hide the run's own outcome.
 */
async function recordUpkeep(db: Db, country: string, host: string, detail: string): Promise<void> {
  await recordEvent(db, { check: 'upkeep', country, subject: host, rows: 0, detail }).catch(() => {});
}

/** lis_cron_frontend --all | --fs_check | --db_scan [--country uk] [--verbose] [--dry-run] */
export async function cronFrontendMain(argv = process.argv): Promise<void> {
  const program = cliProgram('lis_cron_frontend')
    .description(
      'weekly upkeep: purge images no longer listed, check the frontends and stores against the table (config: --config, else $LIS_CONFIG, else ./imagesys.json)',
    )
    .option('--all', 'both: --db_scan, then --fs_check')
    .option('--fs_check', "walk each frontend's and this host's stores' trees: delete orphans, re-push what is missing, prune originals")
    .option('--db_scan', 'the full live_images scan: purge images not seen for upkeep.purgeAfterDays, repair impossible states')
    .option('--country <code>', 'only this country (default: every country in the table)')
    .option('--verbose', 'debug lines too')
    .option('--dry-run', 'say what would be removed or repaired, change nothing')
    .option('--config <file>', 'config file (default: $LIS_CONFIG, else ./imagesys.json, else built-in defaults)')
    .showHelpAfterError();
  program.parse(argv);
  const flags = program.opts<{
    all?: boolean;
    fs_check?: boolean;
    db_scan?: boolean;
    country?: string;
    verbose?: boolean;
    dryRun?: boolean;
    config?: string;
  }>();

  await runCommand(async () => {
    if (!flags.all && !flags.fs_check && !flags.db_scan) throw new UsageError('say what to do: --all, --fs_check or --db_scan');
    const config = loadConfig({ file: flags.config });
    const only = flags.country === undefined ? undefined : parseCountry(flags.country, config);
    const log = createLogger({ component: 'cron_frontend', log: config.log, screen: true, verbose: flags.verbose, country: only });
    lowerPriority();
    let db: Db | null = null;
    let scanDb: Db | null = null;
    let url = '';
    const scope = { scope: 'CronFrontend::main' };
    const exposed = configFileExposure(configFilePath({ file: flags.config }));
    if (exposed) log.warn(exposed, scope);
    const bounds = serviceQueryBounds(config);
    const stopWaitMs = config.database.stopWaitSeconds * 1000;
    // What a cut closes besides the scans' pool: the country's shared-upkeep lock, whose session would hold it.
    let cutLock: (() => void) | null = null;
    let scansCut = false;
    /**
     * The scans' connections closed at once (never a goodbye, which a silent server never returns): the
     * statement in flight rejects, and the server rolls it back, or its transaction, when it reads the close.
     */
    const cutScans = async () => {
      scansCut = true;
      cutLock?.();
      if (scanDb) await settledWithin(closeDb(scanDb, 0), stopWaitMs);
    };
    const boundMs = config.upkeep.frozenDatabaseMinutes * 60_000;
    /**
     * A part of the upkeep, said to be still running every upkeep.progressMinutes (watchProgress), while the
     * database is probed (watchDatabase): a server busy with it answers, and the part goes on however long; one
     * that answers nothing for upkeep.frozenDatabaseMinutes has the part cut (DatabaseFrozenError).
     */
    const watched = async <T>(what: string, country: string, part: () => Promise<T>): Promise<T> => {
      const meta = { ...scope, country };
      const stop = watchProgress(log, what, config.upkeep.progressMinutes * 60_000, meta);
      const probeBounds = { connectMs: bounds.connectMs, queryMs: config.database.queryTimeoutSeconds * 1000 };
      const database = watchDatabase(
        () => probeServer(url, probeBounds),
        boundMs,
        (outcome, silence, previous) => {
          if (silence)
            log.warn(
              `${what}: the database did not answer a probe (${silence.failed} in a row, for ${duration(performance.now() - silence.since)}: ${errorMessage(silence.last)}); the run is cut if it answers none for ${duration(boundMs)}`,
              meta,
            );
          else if (previous) log.info(`${what}: the database answers again, after ${previous.failed} probes unanswered`, meta);
        },
      );
      const started = performance.now();
      try {
        const work = part();
        const silence = await Promise.race([
          work.then(
            () => null,
            () => null,
          ),
          database.frozen,
        ]);
        if (!silence) return await work;
        const error = frozenError(url, silence, what, started, performance.now());
        await cutScans();
        // Its statement rejected as the connections closed; what it does meanwhile (an rsync) is not waited for long.
        await settledWithin(work, stopWaitMs);
        throw error;
      } finally {
        stop();
        database.stop();
      }
    };
    let failures = 0;
    // The country being worked, for a stop by signal (systemd, a shutdown, Ctrl-C) half-way.
    let current: { country: string; release: () => void } | null = null;
    const stop = (signal: NodeJS.Signals) => {
      const where = current;
      log.error(`${signal} received: stopped before the run finished${where ? ` (in ${where.country.toUpperCase()})` : ''}; the next run takes over`, scope);
      // Every change is its own statement, so nothing is half-done; what is left is the outcome, for the
      // upkeep_failed alert (a run under cron has nobody else to record it), and the lock.
      void (async () => {
        try {
          if (db && where && !flags.dryRun)
            await Promise.race([
              recordUpkeep(db, where.country, config.host, `failed: stopped by ${signal} before it finished`),
              new Promise((resolve) => setTimeout(resolve, 5000).unref()),
            ]);
        } finally {
          where?.release();
          await closeLogger(log).catch(() => {});
          process.exit(signal === 'SIGINT' ? 130 : 143);
        }
      })();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    try {
      const swept = sweepDeadRunsTempFolders();
      if (swept) log.info(`Removed ${swept} temp folders of earlier runs that were killed`, scope);
      // Two pools. The run's own short statements (the schema check, the countries, the outcome, who holds a
      // lock) have the daemons' bounds: a database that hangs at 3 a.m. fails the run at once with
      // ERR_DATABASE_TIMEOUT and exit 1 (cron mails it; the pid locks go with the process), rather than leaving
      // it hanging silently and the next week's run "already running". The scans (db_scan's purge and repairs,
      // fs_check's reads and re-pushes) whole-table or waiting on row locks under load, may rightly outlast any
      // query bound: only their connects are bounded, and keepalive ends one whose path was lost. A server that
      // answers nothing at all under them (stopped, its host hung) is found by probing it (watched): the run is cut.
      db = await openDatabase(config, { bounds });
      url = await databaseUrl(config);
      // Their transactions (a purge's delete, a re-push) are statements sent back to back, never waiting on our own
      // work between them: one idle inside a transaction for a query's bound has lost its client (a run cut, or
      // killed, on a path that was lost), and the server ends it rather than keep its row locks, which the next
      // run's scan would wait on until its TCP keepalive gave up, hours later (the daemons' reason as well).
      scanDb = createDb(url, config.database.poolSize, () => {}, { ...connectBound(config), idleInTransactionMs: bounds.queryMs });
      const countries = only ? [only] : await countriesOf(db);
      // Another machine runs under this host name (a config copied): every country's run fails, saying so. Its
      // stores walked here would send every row of the name back a stage (their files are on the other machine's
      // disks), and its run's lock session, named for this host and a pid not running here, would be taken for a
      // dead run of this host and ended, both machines then working the shared part at once.
      const clash = await hostNameClash(db, { id: '', host: config.host, stores: await storeIdentities(config) }, config.manager.staleWorkerSeconds);
      // Said rather than left silent: an operator checking a run (or a cron mail) must see that it ran and why it did nothing.
      if (countries.length === 0) log.info('No country has rows in live_images: nothing to do (--country XX checks one anyway)', scope);
      for (const [index, country] of countries.entries()) {
        const lockFile = path.join(config.services.runDir, `cron_frontend.${country}.lock`);
        let release: () => void;
        try {
          release = acquirePidLock(lockFile, `lis_cron_frontend ${country} since ${new Date().toISOString()}`);
        } catch (error) {
          if (!(error instanceof LockHeldError)) throw error;
          // That country only: the countries after it are still done (the other run records its own outcome).
          const held = new LisError('ERR_CRON_RUNNING', `lis_cron_frontend for ${country.toUpperCase()} is already running: ${error.message}`);
          if (only) throw held;
          failures++;
          log.error(`${held.message}; skipped here`, { ...scope, country });
          continue;
        }
        const started = Date.now();
        let cluster: ClusterPart | null = null;
        // The shared part's lock goes with its connection anyway (process.exit closes it); ended here to be prompt.
        current = {
          country,
          release: () => {
            release();
            if (cluster?.held) void cluster.release();
          },
        };
        cutLock = () => {
          if (cluster?.held) cluster.cut();
        };
        try {
          // What makes this country's run a failure, each in a few words: the outcome's one-line reason.
          const problems: string[] = [];
          const ctx = { config, db: scanDb, log: log.child({ country }), country, dryRun: Boolean(flags.dryRun) };
          const parts: string[] = [];
          // What every host shares (the database scan and purge, the frontends' trees) is worked by one host at a
          // time; this host's stores by each. A dry run changes nothing: it neither takes the shared part nor makes
          // a real run skip it.
          if (clash) throw new LisError('ERR_HOST_NAME_TAKEN', clash);
          cluster = flags.dryRun
            ? null
            : await takeClusterPart(url, db, country, { host: config.host, pid: process.pid }, bounds, (error) =>
                log.error(`the database connection holding ${country.toUpperCase()}'s shared upkeep was lost: ${errorMessage(error)}`, { ...scope, country }),
              );
          if (cluster?.held && cluster.tookOver)
            log.info(`${country.toUpperCase()}: took over the shared upkeep from ${cluster.tookOver}, a run of this host that is gone: its session ended`, {
              ...scope,
              country,
            });
          const elsewhere = cluster && !cluster.held ? cluster.holder : null;
          // Stores every host mounts are shared work as well.
          const sharedStores = config.stores.shared;
          if (elsewhere)
            log.info(
              `${country.toUpperCase()}: the database scan and the frontends are being worked by ${elsewhere}; skipped here, ${sharedStores ? 'and so are the stores (stores.shared: they are the same on every host)' : "this host's stores are still checked"}`,
              { ...scope, country },
            );
          if ((flags.all || flags.db_scan) && elsewhere) parts.push(`db_scan: skipped (worked by ${elsewhere})`);
          else if (flags.all || flags.db_scan) {
            const s = await watched(`${country.toUpperCase()}: db_scan`, country, () => dbScan(ctx));
            const repaired = Object.values(s.repaired).reduce((a, b) => a + b, 0);
            parts.push(
              `db_scan: ${s.purged} purged, ${s.purgeDeferred} deferred${s.requeued ? `, ${s.requeued} listed again and queued anew` : ''}, ${repaired} repaired`,
            );
            // Deferred is not done: those images are still on a frontend, and only a next run removes them.
            if (s.purgeDeferred) problems.push(`${s.purgeDeferred} expired images not purged: ${s.uncleaned.join(', ')} could not be cleaned`);
          }
          if (flags.all || flags.fs_check) {
            const s = await watched(`${country.toUpperCase()}: fs_check`, country, () =>
              fsCheck({ ...ctx, walkFrontends: !elsewhere, walkStores: !(elsewhere && sharedStores) }),
            );
            const fronts = Object.entries(s.frontends)
              .map(
                ([n, t]) =>
                  `${n} ${t.orphans} orphans/${t.missing} re-pushed${t.error ? ' (not checked)' : t.unwalked.length ? ` (${t.unwalked.length} linked folders not walked)` : ''}`,
              )
              .join(', ');
            // A tree walked only in part (a linked folder) was not checked either: the run failed, and says where.
            const unchecked = [
              ...Object.entries(s.frontends).filter(([, t]) => t.error || t.unwalked.length),
              ...(s.thumbnailStore.error || s.thumbnailStore.unwalked.length ? [['thumbnail store']] : []),
              ...(s.originalsStore.error || s.originalsStore.unwalked.length ? [['originals store']] : []),
            ].map(([name]) => name);
            if (unchecked.length) problems.push(`${unchecked.join(', ')} could not be checked`);
            if (elsewhere && sharedStores) parts.push(`fs_check: frontends and stores (shared) skipped (worked by ${elsewhere})`);
            else
              parts.push(
                `fs_check: ${elsewhere ? `frontends skipped (worked by ${elsewhere})` : fronts || 'no frontends'}; thumbnails ${s.thumbnailStore.orphans} orphans/${s.thumbnailStore.partial} partial/${s.thumbnailStore.missing} redone; originals ${s.originalsStore.orphans} orphans/${s.originalsStore.partial} partial/${s.originalsStore.pruned} pruned/${s.originalsStore.missing} refetched`,
              );
          }
          const summary = parts.join('; ');
          log.info(
            `Summary for ${country.toUpperCase()}${flags.dryRun ? ' (dry run: nothing changed)' : ''} in ${((Date.now() - started) / 1000).toFixed(1)}s: ${summary}`,
            { ...scope, country },
          );
          // The outcome, where the manager's alerts find it (whether cron or the manager ran us).
          if (problems.length) failures++;
          if (!flags.dryRun) await recordUpkeep(db, country, config.host, problems.length ? `failed: ${problems.join('; ')}; ${summary}` : `ok: ${summary}`);
        } catch (error) {
          // The database silent: the run stops here, every country after this one with it.
          if (error instanceof DatabaseFrozenError) {
            await tellDatabaseFrozen({ config, db, log }, country, error, { notDone: countries.slice(index + 1), lockHeld: Boolean(cluster?.held) });
            throw error;
          }
          failures++;
          log.error(`${country.toUpperCase()}: ${errorMessage(error)}`, { ...scope, country });
          await recordUpkeep(db, country, config.host, `failed: ${errorMessage(error)}`);
        } finally {
          current = null;
          cutLock = null;
          release();
          if (cluster?.held) await cluster.release();
        }
      }
      return failures ? 1 : 0;
    } finally {
      // Bounded: a query of the short pool's may still wait on a silent database (the outcome recorded above).
      if (scanDb && !scansCut) await closeDb(scanDb, stopWaitMs);
      if (db) await closeDb(db, stopWaitMs);
      await closeLogger(log);
    }
  });
}
