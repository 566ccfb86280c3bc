import type { LisConfig } from '../config/config-schema.ts';
import { daemonMain, type DaemonDefinition } from '../daemon/daemon-main.ts';
import { registerFrontendLagMetrics } from './frontend-lag-metrics.ts';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/create-logger.ts';
import { BackfillLoop } from './backfill.ts';
import pLimit from 'p-limit';
import { RsyncMovement } from './rsync-movement.ts';
import { PushWorker } from './push-worker.ts';
import { checkRsync } from './run-rsync.ts';

export interface PusherSetup {
  config: LisConfig;
  db: Db;
  log: Logger;
  country: string;
  chunkSize: number;
  service: boolean;
  /** Stops backfill (after the transfer in hand). */
  signal: AbortSignal;
}

/**
 * The push worker with its backfill loop beside it, sharing one limit on
 * rsync processes. Fails at once, with how to fix it, when rsync is missing.
 */
export async function createPusher(setup: PusherSetup): Promise<PushWorker> {
  const version = await checkRsync(setup.config.push.rsyncPath);
  setup.log.debug(`Using rsync ${version} (${setup.config.push.rsyncPath})`, { scope: 'Push::start' });
  // At most push.maxParallel rsync processes at once, across the chunk's frontends and backfill; the rest queue in order.
  const limit = pLimit(setup.config.push.maxParallel);
  const movement = new RsyncMovement();
  const backfill = new BackfillLoop({ ...setup, limit, movement }).start();
  return new PushWorker({ config: setup.config, db: setup.db, country: setup.country, limit, movement, onClose: () => backfill.stop() });
}

/** The daemon's own stop signal is not handed to stages; backfill listens for the same signals. */
function stopSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return controller.signal;
}

export const pusherdDefinition: DaemonDefinition = {
  command: 'lis_pusherd',
  component: 'pusherd',
  description: 'copies thumbnails to every enabled frontend with rsync; a row is live once every enabled frontend has it',
  metrics: ({ registry, db, country }) => registerFrontendLagMetrics(registry, db, country),
  create: ({ config, db, log, country, flags }) =>
    createPusher({
      config,
      db,
      log,
      country,
      chunkSize: flags.chunkSize === undefined ? config.queue.chunkSize : Number(flags.chunkSize),
      service: Boolean(flags.service),
      signal: stopSignal(),
    }),
};

export function pusherdMain(argv = process.argv): Promise<void> {
  return daemonMain(pusherdDefinition, argv);
}
