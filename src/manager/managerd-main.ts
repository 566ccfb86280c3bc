import { Option } from 'commander';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { configFileExposure } from '../config/config-file-exposure.ts';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import { closeDb, type Db } from '../db/connect.ts';
import { stopDatabaseWaitMs } from '../daemon/stop-wait.ts';
import { settledWithin } from '../util/settled-within.ts';
import { openDaemonDatabase } from '../daemon/open-daemon-database.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { cliProgram } from '../util/cli-program.ts';
import { closeLogger, createLogger } from '../log/create-logger.ts';
import { errorMessage } from '../errors.ts';
import { installStopSignals, stoppedWhileDatabaseAway } from '../daemon/signals.ts';
import { signalReady } from '../daemon/ready-signal.ts';
import { startServiceHeartbeat } from '../daemon/heartbeat-loop.ts';
import { registerAtStart } from '../daemon/register-at-start.ts';
import { markStopped, workerIdFor } from '../daemon/worker-registry.ts';
import { upkeepFromManager } from './run-upkeep.ts';
import { startSchedule, type ScheduledJob } from './check-schedule.ts';
import { registerManagerEventMetrics } from './manager-event-metrics.ts';
import { startInstanceExporter } from '../daemon/instance-exporter.ts';
import { CHECKS, pruneStats, runCheck, sampleQueue, type Check, type CheckContext } from './run-check.ts';

/** Runs a check, logging (never throwing) a failure, so one bad run does not stop the schedule. */
async function safeCheck(check: Check, ctx: CheckContext): Promise<boolean> {
  try {
    ctx.log.info(await runCheck(check, ctx), { scope: `Manager::${check}` });
    return true;
  } catch (error) {
    ctx.log.error(`${check} failed: ${errorMessage(error)}`, { scope: `Manager::${check}` });
    return false;
  }
}

async function serve(ctx: CheckContext, signal: AbortSignal, configFile: string | undefined, onReady: () => void): Promise<void> {
  const { config, log } = ctx;
  const jobs: ScheduledJob[] = [];
  for (const check of CHECKS) {
    const expression = config.manager.schedule[check];
    if (!expression) continue;
    jobs.push({ name: check, expression, run: () => safeCheck(check, ctx) });
    log.info(`Scheduled ${check}: ${expression}`, { scope: 'Manager::serve' });
  }
  if (config.manager.schedule.cron_frontend) {
    jobs.push({ name: 'cron_frontend', expression: config.manager.schedule.cron_frontend, run: () => upkeepFromManager(ctx.db, log, config.host, configFile) });
    log.info(`Scheduled cron_frontend: ${config.manager.schedule.cron_frontend}`, { scope: 'Manager::serve' });
  }
  jobs.push({
    name: 'sample_queue',
    expression: '* * * * *',
    run: () => sampleQueue(ctx.db).catch((e) => log.error(`sampling the queue failed: ${errorMessage(e)}`)),
  });
  jobs.push({
    name: 'prune_stats',
    expression: '17 * * * *',
    run: () => pruneStats(ctx.db, config.manager.keepStatsDays).catch((e) => log.error(`pruning stats failed: ${errorMessage(e)}`)),
  });
  const schedule = startSchedule(jobs, log);
  onReady();
  // A stop that came before this point (SIGTERM while the exporter was up but the worker not yet registered: a
  // supervisor, or a test that has had its /metrics answer) has fired its 'abort' already and will not again.
  if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  await schedule.stop();
}

/** lis_managerd: heals the queue on a schedule (--service), or runs checks once by hand. */
export async function managerdMain(argv = process.argv): Promise<void> {
  const program = cliProgram('lis_managerd')
    .description('heal the queue: release stuck jobs, park bad retries, disable bad datasources')
    // --service with --check ran the schedule, silently (a service logs to files only): an operator who meant one check
    // saw nothing and no end. The two contradict: a usage error.
    .addOption(new Option('--check <name>', 'run one check once and exit').choices([...CHECKS]).conflicts('service'))
    .option('--country <code>', 'only this country (default: all)')
    .option('--verbose', 'debug lines too')
    .option('--service', 'run the checks on their schedules (manager.schedule) until stopped')
    .option('--config <file>', 'config file')
    .option('--metrics-port <port>', 'with --service: serve Prometheus metrics and /health on this port (default: metrics.ports.managerd; 0 picks a free one)')
    .showHelpAfterError();
  program.parse(argv);
  const flags = program.opts<{ check?: Check; country?: string; verbose?: boolean; service?: boolean; config?: string; metricsPort?: string }>();

  await runCommand(async () => {
    const config = loadConfig({ file: flags.config });
    const country = flags.country === undefined ? undefined : parseCountry(flags.country, config);
    // Checked before anything starts: a bad port is a usage error (exit 2), not found only after connecting and registering.
    const metricsPort = flags.metricsPort === undefined ? undefined : parseIntFlag('--metrics-port', flags.metricsPort, 0, 65535);
    const log = createLogger({ component: 'managerd', log: config.log, screen: !flags.service, verbose: flags.verbose, country });
    const exposed = configFileExposure(configFilePath({ file: flags.config }));
    if (exposed) log.warn(exposed, { scope: 'Manager::main' });
    const { controller, uninstall } = installStopSignals((s) => log.info(`${s} received: stopping`, { scope: 'Manager::signal' }));
    let db: Db | null = null;
    const workerId = workerIdFor(config.host, process.pid);
    try {
      db = await openDaemonDatabase(config, {
        service: Boolean(flags.service),
        signal: controller.signal,
        warn: (m) => log.warn(m, { scope: 'Manager::main' }),
      });
      const ctx: CheckContext = { config, db, log, country };
      if (!flags.service) {
        const checks = flags.check ? [flags.check] : [...CHECKS];
        let ok = true;
        for (const check of checks) ok = (await safeCheck(check, ctx)) && ok;
        return ok ? 0 : 1;
      }
      // /metrics first, as the daemons do: a port that cannot be bound must end the start before a workers row
      // says "alive" (nothing would mark it stopped but the next stuck_jobs check).
      const exporter = await startInstanceExporter({
        config,
        db,
        log,
        component: 'managerd',
        country,
        portFlag: metricsPort,
        extra: (registry) => registerManagerEventMetrics(registry, db!),
      });
      try {
        const identity = { id: workerId, component: 'managerd', host: config.host, pid: process.pid, country: country ?? null };
        await registerAtStart(db, identity, { service: true, signal: controller.signal, warn: (m) => log.warn(m, { scope: 'Manager::main' }) });
        // Registering is the first heartbeat: /metrics says so, rather than 0 (1970) until the next beat.
        exporter?.observer.onHeartbeat();
        const beat = startServiceHeartbeat(db, identity, {
          everyMs: config.queue.heartbeatSeconds * 1000,
          take: () => ({ done: 0, failed: 0, holding: 0 }),
          beaten: () => exporter?.observer.onHeartbeat(),
          warn: (m) => log.warn(m, { scope: 'Manager::main' }),
          error: (m) => log.error(m, { scope: 'Manager::main' }),
        });
        try {
          await serve(ctx, controller.signal, flags.config, signalReady);
        } finally {
          await beat.stop(stopDatabaseWaitMs(config));
          // Bounded: a database that hangs would hold the exit past the service's grace (its query bound is 120 s).
          await settledWithin(markStopped(db, workerId), stopDatabaseWaitMs(config));
        }
      } finally {
        await exporter?.close();
      }
      log.info('Exiting(time_to_die: 1)', { scope: 'Manager::main' });
      return 0;
    } catch (error) {
      if (stoppedWhileDatabaseAway(error, controller.signal)) {
        log.info(`Stopped while waiting for the database: ${errorMessage(error)}`, { scope: 'Manager::main' });
        return 0;
      }
      // As the daemons do: a service logs to files only, so why it stopped must be there too, not only on stderr.
      log.error(errorMessage(error), { scope: 'Manager::main' });
      throw error;
    } finally {
      uninstall();
      // Queries a hung database left unanswered are cut after a moment: the exit keeps within its grace.
      if (db) await closeDb(db, 2000);
      await closeLogger(log);
    }
  });
}
