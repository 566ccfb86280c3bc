import { sql } from 'kysely';
import pg from 'pg';
import { LisError } from '../errors.ts';
import { clientUrl } from './client-config.ts';
import type { Db } from './connect.ts';
import { endClient, GOODBYE_WAIT_MS } from './end-client.ts';

/**
 * The oldest PostgreSQL the schema and the queries run on: 13, for pg_current_xact_id() and pg_xact_status() on
 * xid8 (the result writer's commit check), with stored generated columns (12), transition tables in statement
 * triggers (10), MATERIALIZED CTEs (12).
 */
export const MIN_SERVER_VERSION_NUM = 130000;

/** What the server says of itself on one of our sessions. */
export interface ServerFacts {
  versionNum: number;
  version: string;
  /** A hot standby (a read replica): pg_is_in_recovery(). */
  inRecovery: boolean;
  /** default_transaction_read_only (the role's, the database's or the server's). */
  readOnlyDefault: boolean;
}

/**
 * Why ImageSys cannot use a server with `facts`, or null when it can. `writes`: the caller changes data (every
 * daemon and command but the read-only ones: the status page, lis_metrics, lis worker-report). Pure.
 */
export function serverUnfit(facts: ServerFacts, where: string, writes: boolean): LisError | null {
  if (facts.versionNum < MIN_SERVER_VERSION_NUM)
    return new LisError(
      'ERR_DATABASE_VERSION',
      `the database at ${where} is PostgreSQL ${facts.version}; ImageSys needs PostgreSQL 13 or newer (its schema and queries use pg_current_xact_id, ` +
        'generated columns, MATERIALIZED CTEs). Upgrade the server, or use another one',
    );
  if (writes && (facts.inRecovery || facts.readOnlyDefault))
    return new LisError(
      'ERR_DATABASE_READ_ONLY',
      `the database at ${where} is read-only (${facts.inRecovery ? 'a standby: pg_is_in_recovery() is true' : 'default_transaction_read_only is on for this role or database'}); ` +
        `ImageSys writes to its tables: point the URL (database.url or LIS_DATABASE_URL) at the primary${facts.inRecovery ? '' : ', or have the DBA set default_transaction_read_only off for this role'}`,
    );
  return null;
}

/**
 * Whether the server session behind a connection changes from one transaction to the next: a pooler in
 * transaction (or statement) pooling mode. Two of our connections are asked their server process: `first`
 * once, then `second` inside a transaction it keeps open, then `first` again. Each has a session of its own
 * (the server itself, a pooler in session mode): three answers, two pids, `first`'s the same twice. Behind a
 * transaction pooler `first`'s session went back to the pool after its statement: `second` is handed it (a
 * pooler reuses its most recently freed session), or `first` gets another while `second` holds one. Pure.
 */
export function sharedSessions(firstBefore: number, second: number, firstAfter: number): boolean {
  return second === firstBefore || firstAfter !== firstBefore;
}

/**
 * Throws when ImageSys cannot rightly run on the server of `db` (serverUnfit), or behind a pooler that
 * shares server sessions between transactions: ERR_DATABASE_POOLER. There, our session settings (date style,
 * timeouts), LISTEN (an idle daemon's wake-up), session advisory locks (the weekly upkeep's one-host-per-
 * country, backfill's claims) and prepared statements would land on sessions others use, and be lost: waits
 * that never wake, two hosts purging one country, `prepared statement ... does not exist`. `url` for the second
 * connection; `connectMs` and `queryMs` bound its connect and queries (a path that hangs).
 */
export async function assertServerFit(db: Db, url: string, where: string, options: FitOptions): Promise<void> {
  const { unfit } = await serverFit(db, url, where, options);
  if (unfit) throw unfit;
}

export interface FitOptions {
  writes: boolean;
  connectMs?: number;
  queryMs?: number;
}

/**
 * What assertServerFit checks, as an answer rather than a throw (`lis db status` prints both): the server's facts,
 * and why ImageSys cannot run on it (ERR_DATABASE_VERSION, ERR_DATABASE_READ_ONLY, ERR_DATABASE_POOLER), or null.
 * The pooler check is not made on a server already unfit.
 */
export async function serverFit(db: Db, url: string, where: string, options: FitOptions): Promise<{ facts: ServerFacts; unfit: LisError | null }> {
  return db.connection().execute(async (first) => {
    const { rows } = await sql<{ pid: number; num: number; version: string; recovery: boolean; ro: string }>`
      SELECT pg_backend_pid() AS pid, current_setting('server_version_num')::int AS num, current_setting('server_version') AS version,
             pg_is_in_recovery() AS recovery, current_setting('default_transaction_read_only') AS ro`.execute(first);
    const row = rows[0];
    const facts: ServerFacts = { versionNum: row.num, version: row.version, inRecovery: row.recovery, readOnlyDefault: row.ro === 'on' };
    const unfit = serverUnfit(facts, where, options.writes);
    if (unfit) return { facts, unfit };
    const second = new pg.Client({
      connectionString: clientUrl(url),
      application_name: 'imagesys:check',
      connectionTimeoutMillis: options.connectMs ?? 0,
      ...(options.queryMs ? { query_timeout: options.queryMs } : {}),
    });
    second.on('error', () => {}); // its failures are the calls'
    try {
      await second.connect();
      await second.query('BEGIN');
      const { rows: held } = await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const { rows: again } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(first);
      await second.query('COMMIT');
      if (!sharedSessions(row.pid, held[0].pid, again[0].pid)) return { facts, unfit: null };
      const shared = new LisError(
        'ERR_DATABASE_POOLER',
        `the database at ${where} is reached through a pooler that shares server sessions between transactions (transaction or statement ` +
          `pooling: two connections of ours were served by one server process, pid ${held[0].pid === row.pid ? row.pid : again[0].pid}). ImageSys needs a ` +
          'session of its own per connection (LISTEN for work, session advisory locks, its session settings, prepared statements): ' +
          'point the URL at the pooler in session mode (pgbouncer: pool_mode = session) or at the server itself',
      );
      return { facts, unfit: shared };
    } finally {
      // Bounded: a server that froze once it had answered never closes the session, and pg's end waited for that for
      // ever, holding a command or a daemon's start (which waits out outages, not this) at its check.
      await endClient(second, options.connectMs || GOODBYE_WAIT_MS);
    }
  });
}
