import type { LisConfig } from '../config/config-schema.ts';
import { LisError, errorMessage } from '../errors.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { retryWithBackoff } from '../util/retry-with-backoff.ts';
import { closeDb, createDb, databaseUrl, type Db } from './connect.ts';
import { connectionFailure, describeServer, refusedStartupParameter } from './connection-failure.ts';
import { permanentSqlState, sslTrouble } from './database-error.ts';
import { EMBEDDED_ACCESS } from './embedded-folder-access.ts';
import { migrateToLatest } from './migrate-schema.ts';
import type { QueryBounds } from './query-bounds.ts';
import { assertSchemaCurrent } from './schema-version.ts';
import { assertServerFit } from './server-fit.ts';

/** What openDatabase is asked for beside the config. */
export interface OpenDatabaseOptions {
  onPoolError?: (error: Error) => void;
  /** Migrate to the latest schema whatever the server (default: only the embedded one). */
  migrate?: boolean;
  bounds?: QueryBounds;
  /** Only reads follow: a read replica is fit. */
  readOnly?: boolean;
}

/**
 * Connects (starting the embedded server when no URL is configured). With the
 * embedded default it also migrates, which is what a newcomer needs; against a
 * configured server the schema is an operator's step (`lis db migrate`), so it
 * is only checked: ERR_SCHEMA_BEHIND when this code knows newer migrations.
 * `migrate: true` always migrates (the demo's own database, `lis db`).
 */
export async function openDatabase(config: LisConfig, options: OpenDatabaseOptions = {}): Promise<Db> {
  const url = await databaseUrl(config);
  const db = createDb(url, config.database.poolSize, options.onPoolError, options.bounds);
  // A server that stopped answering mid-check must not keep the process that gave up on it open (closeDb).
  const closeWaitMs = options.bounds?.connectMs ?? config.database.connectTimeoutSeconds * 1000;
  try {
    // A server of the operator's may be too old, a read replica, or behind a transaction pooler (server-fit.ts).
    if (config.database.url !== null)
      await assertServerFit(db, url, describeServer(url), {
        writes: !options.readOnly,
        connectMs: options.bounds?.connectMs,
        queryMs: options.bounds?.queryMs,
      });
    if (options.migrate ?? config.database.url === null) {
      // A migration may rewrite a big table: never under the query bound; on a connection of its own, whose
      // connect is bounded all the same (a service starting against a hung server must fail, not wait for ever).
      const migrating = options.bounds ? createDb(url, 1, options.onPoolError, { connectMs: options.bounds.connectMs }) : db;
      try {
        await migrateToLatest(migrating);
      } finally {
        if (migrating !== db) await closeDb(migrating, closeWaitMs);
      }
    } else await assertSchemaCurrent(db, maskUrlPasswords(url));
  } catch (error) {
    await closeDb(db, closeWaitMs);
    if (error instanceof LisError) throw error;
    throw (
      connectionFailure(url, error) ??
      new LisError('ERR_DATABASE', `cannot use the database at ${describeServer(url)}: ${errorMessage(error)}`, { cause: error })
    );
  }
  return db;
}

/**
 * openDatabase for services: a database that is down at start-up (restarting,
 * not up yet after a reboot) is waited for, with backoff, for up to
 * `retryForMs`; a run by hand should fail at once instead.
 */
export async function openDatabaseWaiting(
  config: LisConfig,
  options: { retryForMs: number; signal: AbortSignal; onRetry: (message: string) => void; onPoolError?: (error: Error) => void; bounds?: QueryBounds },
): Promise<Db> {
  return retryWithBackoff(() => openDatabase(config, { onPoolError: options.onPoolError, bounds: options.bounds }), {
    retryForMs: options.retryForMs,
    signal: options.signal,
    // A bad config or a broken migration will not mend itself: only outages are waited out. Nor will a login or
    // database a configured server refuses (SQLSTATE 28, 3D: this process keeps its URL): waiting them out, a
    // service started with a wrong password said nothing for 10 minutes, servicectl only "not ready after 120s".
    // The embedded server's are waited out still: its password file is read again on each try. Nor will a
    // permission refused on the embedded server's own files (ERR_EMBEDDED_ACCESS: a daemon run as a user
    // who may not use ./var): it said "database not reachable (EACCES ...)" for 10 minutes.
    retryable: (error) => {
      const code = (error as { code?: string }).code;
      return !(
        code === 'ERR_CONFIG' ||
        code === 'ERR_SCHEMA_BEHIND' ||
        code === 'ERR_SCHEMA_MIXED' ||
        code === 'ERR_DATABASE_VERSION' ||
        code === 'ERR_DATABASE_POOLER' ||
        code === 'ERR_DATABASE_READ_ONLY' ||
        code === EMBEDDED_ACCESS ||
        (error instanceof LisError && error.code === 'ERR_MIGRATION' && /migration \S+ failed/.test(error.message)) ||
        (config.database.url !== null && /^(28|3D)/.test(permanentSqlState(error) ?? '')) ||
        // Nor will a parameter of the URL a pooler refuses.
        (config.database.url !== null && refusedStartupParameter((error as { cause?: unknown }).cause ?? error) !== null) ||
        // Nor will an SSL the URL and the server disagree on (a certificate not trusted, SSL off at the server).
        (config.database.url !== null && sslTrouble((error as { cause?: unknown }).cause ?? error) !== null)
      );
    },
    onRetry: (error, delay) => options.onRetry(`database not reachable (${errorMessage(error)}); trying again in ${Math.round(delay / 1000)}s`),
  });
}
