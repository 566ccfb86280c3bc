import type { LisConfig } from '../../src/config/config-schema.ts';
import type { Db } from '../../src/db/connect.ts';
import { runDaemon, type RunOptions, type RunTotals, type StageWorker } from '../../src/daemon/run-daemon.ts';
import type { Logger } from '../../src/log/create-logger.ts';

/**
 * `worker` run as an operator runs a daemon by hand (`lis_<stage>d --country uk`): not a service, so it ends once a
 * claim gains no rows. `options` override the defaults (chunks of 50, country uk, a signal nobody aborts).
 */
export function runByHand(
  worker: StageWorker,
  on: { config: LisConfig; db: Db; url: string },
  log: Logger,
  options: Partial<Omit<RunOptions, 'config' | 'db' | 'databaseUrl' | 'log' | 'service'>> = {},
): Promise<RunTotals> {
  return runDaemon(worker, {
    config: on.config,
    db: on.db,
    databaseUrl: on.url,
    log,
    country: 'uk',
    chunkSize: 50,
    signal: new AbortController().signal,
    ...options,
    service: false,
  });
}
