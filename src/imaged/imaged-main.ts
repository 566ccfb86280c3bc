import type { AddressInfo } from 'node:net';
import { parseIntFlag } from '../config/country.ts';
import { configFileExposure } from '../config/config-file-exposure.ts';
import { configFilePath, loadConfig } from '../config/load-config.ts';
import { runCommand } from '../util/exit-on-error.ts';
import { cliProgram } from '../util/cli-program.ts';
import { closeDb, createDb, databaseUrl, type Db } from '../db/connect.ts';
import { serviceQueryBounds } from '../db/query-bounds.ts';
import { stopDatabaseWaitMs } from '../daemon/stop-wait.ts';
import { settledWithin } from '../util/settled-within.ts';
import { openDaemonDatabase, poolErrorWarning } from '../daemon/open-daemon-database.ts';
import { createDownloadClient } from '../download/download-client.ts';
import { SchemeFetcher } from '../download/fetch-by-scheme.ts';
import { signalReady } from '../daemon/ready-signal.ts';
import { startServiceHeartbeat, type HeartbeatLoop } from '../daemon/heartbeat-loop.ts';
import { registerAtStart } from '../daemon/register-at-start.ts';
import { storeIdentities } from '../daemon/store-identity.ts';
import { markStopped, workerIdFor } from '../daemon/worker-registry.ts';
import { OutcomeTally } from '../daemon/outcome-tally.ts';
import { installStopSignals, stoppedWhileDatabaseAway } from '../daemon/signals.ts';
import { errorMessage } from '../errors.ts';
import { listenOrExplain } from '../util/listen.ts';
import { closeLogger, createLogger } from '../log/create-logger.ts';
import { createThumbnailWorker } from '../thumbnail/thumbnail-worker.ts';
import { generationIdleBoundMs } from './image-row.ts';
import { closeServer, createImagedServer } from './imaged-server.ts';
import { ThumbnailService } from './thumbnail-service.ts';

interface ImagedFlags {
  port?: string;
  config?: string;
  verbose?: boolean;
  service?: boolean;
}

/** `lis_imaged [--port N] [--config FILE]`: the on-demand thumbnail server behind the frontends' nginx. */
export async function imagedMain(argv = process.argv): Promise<void> {
  const program = cliProgram('lis_imaged')
    .description('answer for thumbnails the frontends lack: serve them from the store, or make them now')
    .option('--port <n>', 'listen on this port (default: imaged.port from config; 0 picks a free one)')
    .option('--config <file>', 'config file (default: $LIS_CONFIG, else ./imagesys.json, else built-in defaults)')
    .option('--verbose', 'debug lines too, and on screen')
    .option('--service', 'run as a service: log to files only')
    .showHelpAfterError();
  program.parse(argv);
  const flags = program.opts<ImagedFlags>();

  await runCommand(async () => {
    const config = loadConfig({ file: flags.config });
    const port = flags.port === undefined ? config.imaged.port : parseIntFlag('--port', flags.port, 0, 65535);
    const log = createLogger({ component: 'imaged', log: config.log, screen: !flags.service, verbose: flags.verbose });
    const scope = { scope: 'Imaged::main' };
    const exposed = configFileExposure(configFilePath({ file: flags.config }));
    if (exposed) log.warn(exposed, scope);
    const { controller, uninstall } = installStopSignals((signal) => log.info(`${signal} received: finishing the requests in hand`, scope));
    let db: Db | null = null;
    let locks: Db | null = null;
    const client = createDownloadClient(config.download);
    const fetcher = new SchemeFetcher(client, config);
    const workerId = workerIdFor(config.host, process.pid);
    let beat: HeartbeatLoop | undefined;
    // Rows the database would not take back, still held as we stop (UnreleasedRows): the stop mark says how many.
    let owed = () => 0;
    try {
      const warn = (m: string) => log.warn(m, scope);
      // A connection lost (a database restarted, restored from a backup, failed over): what it says we hold is looked at.
      let lost = () => {};
      db = await openDaemonDatabase(config, { service: Boolean(flags.service), signal: controller.signal, warn, onConnectionLost: () => lost() });
      const database = db;
      // Bounded as the main pool is (serviceQueryBounds): a generation's transaction on a hung path would keep its slot for ever.
      // And on the server's side: a generation whose path was lost leaves its session there, idle in its transaction,
      // holding the image's lock (every request for the image 503) until the server's TCP keepalive gives up, hours later.
      locks = createDb(await databaseUrl(config), config.imaged.maxGenerations, poolErrorWarning(warn), {
        ...serviceQueryBounds(config),
        idleInTransactionMs: generationIdleBoundMs(config),
      });
      // Registered like the daemons, so that if this process dies holding a row, lis_managerd gives it back.
      const identity = { id: workerId, component: 'imaged', host: config.host, pid: process.pid, country: null, stores: await storeIdentities(config) };
      await registerAtStart(database, identity, {
        service: Boolean(flags.service),
        signal: controller.signal,
        warn,
        liveSeconds: config.manager.staleWorkerSeconds,
      });
      const thumbnailer = createThumbnailWorker({ config, db: database });
      const outcomes = new OutcomeTally();
      const service = new ThumbnailService({ config, db: database, locks, log, workerId, fetcher, thumbnailer, outcomes });
      owed = () => service.unreleased.size;
      lost = () => service.held.lost();
      service.held.start(config.queue.heartbeatSeconds * 1000);
      const server = createImagedServer(config, service, log);
      // Each beat also adds the stages' outcomes since the last to datasource_minutes (kept for the next when it fails).
      beat = startServiceHeartbeat(database, identity, {
        everyMs: config.queue.heartbeatSeconds * 1000,
        take: () => ({ done: 0, failed: 0, holding: service.gate.stats.running, outcomes: outcomes.take() }),
        restore: (unsent) => outcomes.restore(unsent.outcomes ?? []),
        warn,
        error: (m) => log.error(m, scope),
      });
      await listenOrExplain(server, port, config.imaged.host, 'lis_imaged');
      const address = server.address() as AddressInfo;
      log.info(`lis_imaged listening on http://${config.imaged.host}:${address.port}/`, scope);
      // servicectl start waits for this, not for a timer.
      signalReady();
      await new Promise<void>((resolve) => {
        if (controller.signal.aborted) resolve();
        controller.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await closeServer(server);
      // A last try at rows the database would not take back (UnreleasedRows), while it is still open. Bounded as
      // markStopped is: a database that keeps the connection and never answers would hold the exit until the
      // query's bound (120 s), past the service's grace; lis_managerd releases what is left once we are stopped.
      await settledWithin(service.close(), stopDatabaseWaitMs(config));
      await thumbnailer.close?.();
      return 0;
    } catch (error) {
      if (stoppedWhileDatabaseAway(error, controller.signal)) {
        log.info(`Stopped while waiting for the database: ${errorMessage(error)}`, scope);
        return 0;
      }
      log.error(errorMessage(error), scope);
      throw error;
    } finally {
      await beat?.stop(stopDatabaseWaitMs(config));
      fetcher.destroy();
      client.destroy();
      // Bounded, as the daemons' stop is: a database that hangs would hold the exit past the service's grace.
      if (db) await settledWithin(markStopped(db, workerId, owed()), stopDatabaseWaitMs(config));
      uninstall();
      if (locks) await closeDb(locks, 2000);
      if (db) await closeDb(db, 2000);
      await closeLogger(log);
    }
  });
}
