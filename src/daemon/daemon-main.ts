import { Command } from 'commander';
import type client from 'prom-client';
import { parseCountry, parseIntFlag } from '../config/country.ts';
import { configFileExposure } from '../config/config-file-exposure.ts';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import type { LisConfig } from '../config/config-schema.ts';
import { closeDb, type Db } from '../db/connect.ts';
import { openDaemonDatabase } from './open-daemon-database.ts';
import { embeddedUrl } from '../db/embedded-server.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { cliProgram } from '../util/cli-program.ts';
import { closeLogger, createLogger, type Logger } from '../log/create-logger.ts';
import { errorMessage } from '../errors.ts';
import { ProgressLine } from './progress-line.ts';
import { signalReady } from './ready-signal.ts';
import { runDaemon, type StageWorker } from './run-daemon.ts';
import { installStopSignals, stoppedWhileDatabaseAway } from './signals.ts';
import { startInstanceExporter, type InstanceExporter } from './instance-exporter.ts';

export interface DaemonFlags {
  country: string;
  verbose?: boolean;
  chunkSize?: string;
  service?: boolean;
  metricsPort?: string;
  config?: string;
  [extra: string]: unknown;
}

export interface DaemonDefinition {
  /** `lis_downloadd` */
  command: string;
  component: string;
  description: string;
  /** Adds the daemon's own flags (e.g. --noproxy). */
  extraOptions?: (command: Command) => void;
  /** Builds the stage worker once config, database and logger are ready. */
  create(setup: { config: LisConfig; db: Db; log: Logger; country: string; flags: DaemonFlags }): Promise<StageWorker> | StageWorker;
  /** Registers the component's own Prometheus metrics (e.g. the pusher's frontend lag). */
  metrics?(setup: { registry: client.Registry; config: LisConfig; db: Db; country: string }): void;
}

/**
 * The whole life of a daemon process: flags, config, logs, database, signals,
 * the chunk loop, and an exit code. Each bin/lis_*d is this plus its stage.
 */
export async function daemonMain(definition: DaemonDefinition, argv = process.argv): Promise<void> {
  const program = cliProgram(definition.command)
    .description(definition.description)
    .requiredOption('--country <code>', 'the country to work, e.g. uk')
    .option('--verbose', 'debug lines too, and on screen')
    .option('--chunk-size <n>', 'rows claimed at a time (default: queue.chunkSize from config)')
    .option('--service', 'run as a service: wait for work instead of exiting when there is none; log to files only')
    .option('--config <file>', 'config file (default: $LIS_CONFIG, else ./imagesys.json, else built-in defaults)')
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics and /health on this port (default: metrics.ports.<component> from config plus the country\'s place in "countries"; 0 picks a free one)',
    )
    .showHelpAfterError();
  definition.extraOptions?.(program);
  program.parse(argv);
  const flags = program.opts<DaemonFlags>();

  await runCommand(async () => {
    const config = loadConfig({ file: flags.config });
    const country = parseCountry(flags.country, config);
    const chunkSize = flags.chunkSize === undefined ? config.queue.chunkSize : parseIntFlag('--chunk-size', flags.chunkSize, 1, 10000);
    // Every flag is checked before anything starts: a bad one is a usage error (exit 2), not an ERROR in the daemon's log after connecting.
    const metricsPort = flags.metricsPort === undefined ? undefined : parseIntFlag('--metrics-port', flags.metricsPort, 0, 65535);
    const log = createLogger({ component: definition.component, log: config.log, screen: !flags.service, verbose: flags.verbose, country });
    const exposed = configFileExposure(configFilePath({ file: flags.config }));
    if (exposed) log.warn(exposed, { scope: `${definition.component}::main` });
    const { controller, uninstall } = installStopSignals((signal) =>
      log.info(`${signal} received: finishing the rows in hand, giving back the rest`, { scope: `${definition.component}::signal` }),
    );
    let db: Db | null = null;
    let progress: ProgressLine | null = null;
    let exporter: InstanceExporter | null = null;
    try {
      let connectionsLost = 0;
      db = await openDaemonDatabase(config, {
        service: Boolean(flags.service),
        signal: controller.signal,
        warn: (m) => log.warn(m, { scope: `${definition.component}::main` }),
        onConnectionLost: () => connectionsLost++,
      });
      // The server is up by now (openDatabase made sure): only its URL is needed, for LISTEN.
      const url = config.database.url ?? embeddedUrl(config.database.embedded);
      const worker = await definition.create({ config, db, log, country, flags });
      exporter = await startInstanceExporter({
        config,
        db,
        log,
        component: definition.component,
        country,
        portFlag: metricsPort,
        extra: definition.metrics && ((registry) => definition.metrics!({ registry, config, db: db!, country })),
      });
      let totals = { done: 0, failed: 0 };
      progress = flags.service ? null : new ProgressLine(process.stderr, () => totals).start();
      await runDaemon(worker, {
        config,
        db,
        databaseUrl: url,
        log,
        country,
        chunkSize,
        service: Boolean(flags.service),
        signal: controller.signal,
        observer: exporter?.observer,
        connectionsLost: () => connectionsLost,
        onProgress: (t) => (totals = { done: t.done, failed: t.failed }),
        onReady: () => signalReady(),
      });
      return 0;
    } catch (error) {
      if (stoppedWhileDatabaseAway(error, controller.signal)) {
        log.info(`Stopped while waiting for the database: ${errorMessage(error)}`, { scope: `${definition.component}::main` });
        return 0;
      }
      log.error(errorMessage(error), { scope: `${definition.component}::main` });
      throw error;
    } finally {
      progress?.stop();
      await exporter?.close();
      uninstall();
      // Queries a hung database left unanswered are cut after a moment: the exit keeps within its grace.
      if (db) await closeDb(db, 2000);
      await closeLogger(log);
    }
  });
}
