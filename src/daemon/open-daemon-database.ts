import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { openDatabase, openDatabaseWaiting } from '../db/open-database.ts';
import { serviceQueryBounds } from '../db/query-bounds.ts';
import { errorMessage } from '../errors.ts';

/** How long a service waits for its database at start: a host's boot may start the daemons before PostgreSQL. */
export const SERVICE_DATABASE_WAIT_MS = 10 * 60_000;

/**
 * The database of a long-running process (the daemons, lis_managerd, lis_imaged): as a service, waited
 * for, each failed try warned; by hand, opened at once, so the operator sees the error now. A connection
 * of the pool lost later is warned about, never thrown: the pool opens another on the next query. Its
 * connects and queries are bounded (serviceQueryBounds: the config's database timeouts), its migrations not.
 */
export function openDaemonDatabase(
  config: LisConfig,
  options: { service: boolean; signal: AbortSignal; warn: (message: string) => void; onConnectionLost?: () => void },
): Promise<Db> {
  const warn = poolErrorWarning(options.warn);
  const onPoolError = (error: Error) => {
    warn(error);
    options.onConnectionLost?.();
  };
  // Run by hand or as a service alike: a database that hangs must not hang the process (query-bounds.ts, bounded-client.ts).
  const bounds = serviceQueryBounds(config);
  return options.service
    ? openDatabaseWaiting(config, { retryForMs: SERVICE_DATABASE_WAIT_MS, signal: options.signal, onPoolError, onRetry: options.warn, bounds })
    : openDatabase(config, { onPoolError, bounds });
}

/** A pool's error handler that warns: an idle connection lost (a server restart) is news, not a crash. */
export function poolErrorWarning(warn: (message: string) => void): (error: Error) => void {
  return (error) => warn(`Database connection lost: ${errorMessage(error)}`);
}
