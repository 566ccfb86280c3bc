import type { LisConfig } from '../config/config-schema.ts';
import type { SessionSettings } from './session-settings.ts';

/**
 * How long a connect and a query may go unanswered. A database that hangs (a dead network path, a server
 * frozen on I/O, a WAL stall on a full disk) accepts, or keeps, the connection and never answers; pg has no
 * bound of its own, so without these a claim, a heartbeat or a check waits for ever.
 */
export interface QueryBounds {
  connectMs: number;
  /**
   * Unset: connects only are bounded (connectBound), for work whose statements may rightly run long
   * (lis_cron_frontend's scans); its connections then have TCP keepalive, so that a path lost under a long
   * statement ends it in minutes (Linux: 9 probes 75 s apart), where nothing else would.
   */
  queryMs?: number;
  /**
   * The server ends a session left idle inside a transaction this long (idle_in_transaction_session_timeout):
   * the services' query bound (serviceQueryBounds), and longer for pools whose transactions hold locks while
   * the client works (lis_imaged's image locks: generationIdleBoundMs). On a path that was lost, the server's side of the session stays, idle in its transaction, its locks held, until its TCP
   * keepalive gives up (two hours by default). Unset: no such bound.
   */
  idleInTransactionMs?: number;
  /**
   * How long a query may wait for a connection of the pool (all in use), connect included, before it fails with
   * pg-pool's "timeout exceeded when trying to connect": the Interface's, whose callers (a listing page) must not
   * queue without end behind a database that hangs. Unset: as long as it takes (a daemon's hundred chunks
   * flushing under load wait rightly).
   */
  poolWaitMs?: number;
  /** The server's lock_timeout for the session (a migration's bounded wait for a table); unset: none (0), whatever the role's. */
  lockTimeoutMs?: number;
}

/** The session settings (session-settings.ts) of a pool made with `bounds`: ours, never the role's or the database's. */
export function sessionSettingsOf(bounds?: QueryBounds): SessionSettings {
  return { statementTimeoutMs: bounds?.queryMs ?? 0, lockTimeoutMs: bounds?.lockTimeoutMs ?? 0, idleInTransactionMs: bounds?.idleInTransactionMs };
}

/**
 * The long-running processes' bounds (daemons, lis_managerd, lis_imaged), from database.connectTimeoutSeconds
 * and database.queryTimeoutSeconds (10 s and 120 s unless set; config-schema.ts says why those). Their
 * queries are index-driven and short (a claim of up to 10,000 rows, a batch of results, a heartbeat, a
 * check); `lis web`'s and lis_cron_frontend's short statements take them too. Long work is not cut by them:
 * migrations run on a connection of their own (openDatabase), lis_cron_frontend's scans (db_scan's purge and
 * repairs, fs_check) under connectBound only, bulk changes in the CLI unbounded, whose operator sees them waiting.
 */
export function serviceQueryBounds(config: LisConfig): QueryBounds {
  const queryMs = config.database.queryTimeoutSeconds * 1000;
  // Their transactions are statements sent back to back (a results flush, a stuck worker's release), never
  // waiting on other work, so one idle longer than a query may take has lost its client: a path that went
  // silent mid-transaction, after our bound ended our side. The server would keep it, its row locks held
  // (the retry of the same results waiting on them), until its TCP keepalive gave up, two hours later.
  return { connectMs: config.database.connectTimeoutSeconds * 1000, queryMs, idleInTransactionMs: queryMs };
}

/**
 * Only the connect bound of the config (database.connectTimeoutSeconds): a database that hangs fails a connect
 * with ERR_DATABASE_TIMEOUT; the statements themselves are not cut (QueryBounds.queryMs unset).
 */
export function connectBound(config: LisConfig): QueryBounds {
  return { connectMs: config.database.connectTimeoutSeconds * 1000 };
}
