import type { Db } from '../db/connect.ts';
import { isDatabaseOutage } from '../db/database-error.ts';
import { errorMessage } from '../errors.ts';
import { SERVICE_DATABASE_WAIT_MS } from './open-daemon-database.ts';
import { rethrowIfPermanent } from './result-writer.ts';
import { retryWithBackoff } from '../util/retry-with-backoff.ts';
import { registerWorker, type WorkerIdentity } from './worker-registry.ts';
import { refuseHostNameClash } from './host-name-clash.ts';

/**
 * Registers a service's worker as it starts, waiting out a database outage as the connect before it does
 * (openDaemonDatabase): a database that went away between the two (a restart, a failover) is no reason for a
 * service to exit; before, it exited 1, and lis_downloadd did so in a chaos run whose PostgreSQL restarted as a
 * killed daemon came back. Run by hand, the error is the operator's at once. An error no retry can fix (bad SQL)
 * is thrown as PermanentDatabaseError. A host name another machine runs as is refused (ERR_HOST_NAME_TAKEN). Returns the rows an earlier process with this id still held.
 */
export function registerAtStart(
  db: Db,
  identity: WorkerIdentity,
  options: { service: boolean; signal: AbortSignal; warn: (message: string) => void; retryForMs?: number; liveSeconds?: number },
): Promise<number> {
  const register = () =>
    refuseHostNameClash(db, identity, options.liveSeconds ?? 60)
      .then(() => registerWorker(db, identity))
      .catch((error: unknown) => {
        rethrowIfPermanent('Cannot register the worker', error);
        throw error;
      });
  if (!options.service) return register();
  return retryWithBackoff(register, {
    retryForMs: options.retryForMs ?? SERVICE_DATABASE_WAIT_MS,
    signal: options.signal,
    retryable: isDatabaseOutage,
    onRetry: (error, delay) =>
      options.warn(`Cannot register the worker, the database is away (${errorMessage(error)}); trying again in ${Math.round(delay / 1000)}s`),
  });
}
