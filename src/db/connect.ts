import path from 'node:path';
import { promises as fs } from 'node:fs';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql, type MigrationResult } from 'kysely';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError, errorMessage } from '../errors.ts';
import { isConnectError, isNotAnswering, permanentSqlState, sslTrouble } from './database-error.ts';
import { EMBEDDED_ACCESS } from './embedded-folder-access.ts';
import { ensureEmbeddedRunning } from './embedded-server.ts';
import { clientUrl } from './client-config.ts';
import { preparingClient } from './prepared-query.ts';
import { withSessionSettings, type SessionSettings } from './session-settings.ts';
import { assertServerFit } from './server-fit.ts';
import { askSslPrefer } from './ssl-prefer.ts';
import { MIGRATIONS_DIR, assertSchemaCurrent, refuseMixedSchema, schemaStatus, type SchemaStatus } from './schema-version.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { retryWithBackoff } from '../util/retry-with-backoff.ts';
import { settledWithin } from '../util/settled-within.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export { MIGRATIONS_DIR };

/** The configured server's URL, or the embedded server's, started if need be. */
export async function databaseUrl(config: LisConfig): Promise<string> {
  if (config.database.url === null) return ensureEmbeddedRunning(config.database.embedded);
  // sslmode=prefer (or allow): the server asked once whether it takes SSL, so that clientUrl can fall back to plain as libpq does.
  await askSslPrefer(config.database.url, config.database.connectTimeoutSeconds * 1000);
  return config.database.url;
}

/** The URL each Db was made for, so that a failure to connect can name the server. */
const urls = new WeakMap<Db, string>();
/** The connect bound each Db was made with, for the migration's own connection. */
const connectBounds = new WeakMap<Db, number>();

/** The URL `db` was made for (createDb): for a session of its own beside the pool (a lock held across statements). */
export function urlOf(db: Db): string {
  const url = urls.get(db);
  if (url === undefined) throw new LisError('ERR_NO_DATABASE_URL', 'this database handle was not made by createDb: its URL is unknown');
  return url;
}

/** `127.0.0.1:54329/imagesys as imagesys`: where a URL leads, without its password. */
export function describeServer(url: string): string {
  try {
    const u = new URL(url);
    const user = decodeURIComponent(u.username);
    return `${u.hostname || 'localhost'}:${u.port || 5432}${u.pathname || '/'}${user ? ` as ${user}` : ''}`;
  } catch {
    return maskUrlPasswords(url);
  }
}

/**
 * A failure to connect as an operator should read it: "cannot connect to the
 * database at 127.0.0.1:54329/imagesys as imagesys: connect ECONNREFUSED
 * ..." (what the server is, never the password); ERR_DATABASE_TIMEOUT, "the
 * database at ... is not answering", when a bound of QueryBounds ran out
 * (the server accepted, or had the connection, and said nothing). Null for other errors.
 */
export function connectionFailure(url: string, error: unknown): LisError | null {
  if (isNotAnswering(error)) {
    if (error instanceof LisError) return error;
    return notAnsweringError(url, errorMessage(error) === 'timeout expired' ? 'no answer to a connect in time' : errorMessage(error), error);
  }
  const refused = refusedStartupParameter(error);
  if (refused)
    return new LisError(
      'ERR_DATABASE',
      `cannot connect to the database at ${describeServer(url)}: ${errorMessage(error)} (a pooler in front refuses a parameter of the URL: ` +
        `take ${refused} out of the URL and set it on the role instead, ALTER ROLE ... SET, or list it in pgbouncer's ignore_startup_parameters)`,
      { cause: error },
    );
  if (!isConnectError(error)) return null;
  const e = error as { code?: string };
  const ssl = sslTrouble(error);
  const hint = ssl ? ` (${ssl})` : e.code === 'ECONNREFUSED' ? ' (is the server running? `npx lis db status`)' : e.code === '28P01' ? ' (wrong password)' : '';
  return new LisError('ERR_DATABASE', `cannot connect to the database at ${describeServer(url)}: ${errorMessage(error)}${hint}`, { cause: error });
}

/**
 * The startup parameter a pooler refused (pgbouncer: `unsupported startup parameter: options`), or null. We send
 * none but application_name (session-settings.ts): the URL's own (`options=-c search_path=...`) are. Pure.
 */
export function refusedStartupParameter(error: unknown): string | null {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? (/^unsupported startup parameter: (\S+)/.exec(message)?.[1] ?? null) : null;
}

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

/** Our own timer on a query runs this much past the server's statement_timeout: the server's cancel needs a moment to come. */
const QUERY_GRACE_MS = 2000;

/** ERR_DATABASE_TIMEOUT: the line an operator reads for a bound that ran out. */
function notAnsweringError(url: string, what: string, cause: unknown): LisError {
  return new LisError('ERR_DATABASE_TIMEOUT', `the database at ${describeServer(url)} is not answering: ${what}`, { cause });
}

/**
 * A pg client with QueryBounds, each query bounded twice. The server's statement_timeout cancels it there:
 * the connection stays sound, and a query we gave up on cannot commit later (a claim left waiting on a lock
 * took its rows after the runner had stopped waiting, rows that no chunk held). Our own timer (pg's
 * query_timeout) fires when the server cannot answer at all: a lost path, a frozen server. TCP keepalive
 * would not do: a frozen server's kernel answers the probes, and on a lost path Linux gives up only after
 * 9 probes 75 s apart. pg's query_timeout fails the query but keeps the connection, with the unanswered
 * query still first in line, so the next user of that pooled client would wait behind it: the connection
 * is ended (destroyed, as a query is active) and the pool drops it.
 */
function boundedClient(url: string, bounds: QueryBounds): typeof pg.Client {
  const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;
  class BoundedClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      super({
        ...config,
        connectionTimeoutMillis: bounds.connectMs,
        // The server's statement_timeout and idle bound are set on the session (sessionSettingsOf), not here.
        ...(bounds.queryMs === undefined ? { keepAlive: true } : { query_timeout: bounds.queryMs + QUERY_GRACE_MS }),
      });
    }

    // The pool connects with a callback; pg's bare "timeout expired" becomes a line an operator can read.
    // @ts-expect-error pg's connect() has a promise and a callback form; this forwards both.
    override connect(callback?: (error: Error | null) => void): unknown {
      const named = (error: Error) => (isNotAnswering(error) ? notAnsweringError(url, `no answer to a connect in ${seconds(bounds.connectMs)}`, error) : error);
      if (callback) return super.connect((error: Error | null) => callback(error && named(error)));
      return super.connect().catch((error: Error) => Promise.reject(named(error)));
    }

    // @ts-expect-error pg's query() has a dozen overloads; this forwards them all, wrapping the promise and callback forms.
    override query(...args: unknown[]): unknown {
      const named = (error: Error) => {
        if (!isNotAnswering(error)) return error;
        // The server's own cancel (57014) leaves the connection sound; our timer's does not.
        if ((error as { code?: unknown }).code !== '57014') this.end().catch(() => {});
        return notAnsweringError(url, bounds.queryMs === undefined ? 'no reply to a query' : `no reply to a query in ${seconds(bounds.queryMs)}`, error);
      };
      const last = args.at(-1);
      if (typeof last === 'function') {
        const callback = last as (error: Error | null, ...rest: unknown[]) => void;
        args[args.length - 1] = (error: Error | null, ...rest: unknown[]) => callback(error && named(error), ...rest);
      }
      const result = (super.query as (...a: unknown[]) => unknown)(...args);
      return result instanceof Promise ? result.catch((error: Error) => Promise.reject(named(error))) : result;
    }
  }
  return BoundedClient as unknown as typeof pg.Client;
}

/**
 * A Kysely instance over a pg pool. An idle connection that dies (a server restart) is logged, not fatal.
 * With `bounds`, a connect or query that goes unanswered fails with ERR_DATABASE_TIMEOUT (QueryBounds).
 */
export function createDb(url: string, poolSize: number, onPoolError: (error: Error) => void = () => {}, bounds?: QueryBounds): Db {
  const pool = new pg.Pool({
    connectionString: clientUrl(url),
    max: poolSize,
    application_name: `imagesys:${path.basename(process.argv[1] ?? 'node')}`,
    // On the client, not the pool: the pool's connectionTimeoutMillis would also bound the wait for a free
    // connection, which under load (a hundred chunks flushing) is long and legitimate.
    // Statements marked by runPrepared run as named prepared statements, on the pool and in transactions alike.
    // Each connection sets our session settings first (session-settings.ts: date style, isolation, timeouts).
    Client: preparingClient(withSessionSettings(bounds ? boundedClient(url, bounds) : pg.Client, sessionSettingsOf(bounds))),
    // The pool's own bound; the client's connect keeps its connectMs (BoundedClient sets its own).
    ...(bounds?.poolWaitMs ? { connectionTimeoutMillis: bounds.poolWaitMs } : {}),
  });
  // pg emits 'error' on a client whose server connection dies, even while it is checked out and its
  // query is being rejected; the pool listens only to idle clients. Without a listener of our own, a
  // PostgreSQL restart would crash the process instead of failing the query in hand.
  // The pool also emits an idle client's error as its own: said once per connection, not twice (a database
  // restart logged each pooled connection's loss twice, `Database connection lost: ...`).
  const clients = new Set<pg.Client>();
  const told = new WeakSet<object>();
  const tell = (error: Error, client: object) => {
    if (told.has(client)) return;
    told.add(client);
    onPoolError(error);
  };
  pool.on('connect', (client) => {
    clients.add(client);
    client.on('error', (error: Error) => tell(error, client));
  });
  pool.on('remove', (client) => clients.delete(client as pg.Client));
  pool.on('error', (error, client) => tell(error, client));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  urls.set(db, url);
  if (bounds?.connectMs !== undefined) connectBounds.set(db, bounds.connectMs);
  clientsOf.set(db, clients);
  return db;
}

/** The connected clients of each Db's pool, for closeDb. */
const clientsOf = new WeakMap<Db, Set<pg.Client>>();

/**
 * Closes a Db, waiting at most `waitMs` for the queries in flight and for the server to close each connection.
 * Those still open then (a database that hangs) are cut: a socket that will never hear back would otherwise
 * hold up the close, and keep a stopping process alive, until its query bound (database.queryTimeoutSeconds),
 * past its grace. The pool's end leaves an idle connection at once, its goodbye sent and its socket open until
 * the server closes its side: a server frozen (stopped, its host hung) never does, and that one socket kept a
 * process whose work was done from exiting until the server ran again (lis_cron_frontend cut by a frozen server).
 */
export async function closeDb(db: Db, waitMs: number): Promise<void> {
  const live = clientsOf.get(db) ?? new Set<pg.Client>();
  const clients = new Set(live);
  const closing = db.destroy();
  if (
    await settledWithin(
      closing.then(() => Promise.all([...clients].map(socketClosed))),
      waitMs,
    )
  )
    return closing;
  for (const client of new Set([...clients, ...live])) client.connection.stream.destroy();
  await closing;
}

/** When a client's socket has closed (both ways), or at once when it already has. */
function socketClosed(client: pg.Client): Promise<void> {
  const { stream } = client.connection;
  if (stream.closed || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

export function migrator(db: Db): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    // Migrations written on parallel branches land in any order; each is applied once all the same.
    allowUnorderedMigrations: true,
  });
}

/**
 * Brings the schema up to date. Kysely's Migrator holds an advisory lock, so
 * two processes running this at once is safe: the second finds nothing to do.
 */
/**
 * How long a migration waits for a table's lock (SQLSTATE 55P03 after). An ALTER TABLE waiting for a session that
 * holds its table (a psql left idle in a transaction, a long scan) makes every later statement on that table wait
 * behind it: the daemons' heartbeats and pushes stood still until the session ended, with no word from the migration.
 */
export const MIGRATION_LOCK_WAIT_MS = 10_000;

/**
 * The sessions of this database in a transaction for over `ms`: who may hold the lock a migration gave up on. A
 * session of another role shows no transaction start, state or query to a role without pg_read_all_stats (the
 * daemons' role, when a role of its own migrates): such a session holding a lock on a table here (pg_locks shows
 * every session's) is named all the same, with its role and program, rather than "none now".
 */
async function longTransactions(db: Db, ms: number): Promise<string> {
  const { rows } = await sql<{ pid: number; role: string; app: string; state: string | null; secs: number | null; query: string | null }>`
    SELECT a.pid, coalesce(a.usename::text, '?') AS role, coalesce(nullif(a.application_name, ''), '?') AS app, a.state,
           extract(epoch FROM now() - a.xact_start)::int AS secs, left(a.query, 80) AS query
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
       AND (a.xact_start < now() - make_interval(secs => ${ms / 1000}::float8)
            OR (a.xact_start IS NULL AND a.state IS NULL
                AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                             WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted AND d.datname = current_database())))
     ORDER BY a.xact_start NULLS LAST LIMIT 5`.execute(db);
  return rows.length
    ? rows
        .map((r) =>
          r.secs === null
            ? `pid ${r.pid} (${r.app}, role ${r.role}, holding locks here; its state and query are hidden from this role: a superuser or a member of pg_read_all_stats sees them)`
            : `pid ${r.pid} (${r.app}, ${r.state} for ${r.secs}s: ${r.query})`,
        )
        .join('; ')
    : 'none now (it has ended: run it again)';
}

/**
 * What to do when a migration is refused a privilege (42501): migrations create and alter tables, functions and
 * triggers, which only the schema's owner (or a role with CREATE on it, owning the tables) may do; the daemons need
 * far less (README, "An external PostgreSQL").
 */
function migrationPrivilegeHint(url: string | undefined): string {
  let role = 'this role';
  try {
    if (url) role = `the role ${decodeURIComponent(new URL(url).username) || '(default)'}`;
  } catch {
    // not a URL: said generically
  }
  return (
    `${role} may not create or change the tables: run \`lis db migrate\` with a URL whose role owns the schema (or has CREATE on it ` +
    'and owns the tables), then run the daemons with their own role, granted SELECT, INSERT, UPDATE, DELETE on the tables'
  );
}

export async function migrateToLatest(db: Db, lockWaitMs = MIGRATION_LOCK_WAIT_MS): Promise<MigrationResult[]> {
  const url = urls.get(db);
  // A newer release may have migrated it (a rolling upgrade: its hosts first, then ours): that schema counts as
  // current here too (assertSchemaCurrent), and Kysely, finding applied migrations it does not know, would call
  // them "corrupted" and refuse every command and (embedded) daemon start of this release.
  let status: SchemaStatus;
  try {
    status = await schemaStatus(db);
  } catch (error) {
    throw (url ? connectionFailure(url, error) : null) ?? error;
  }
  refuseMixedSchema(status, url ? maskUrlPasswords(url) : 'the database');
  if (status.unknown.length > 0 || status.missing.length === 0) return [];
  // On a connection of its own whose lock waits are bounded (the Migrator runs every pending migration on one).
  const connectMs = connectBounds.get(db);
  const migrating = url ? createDb(url, 1, undefined, { connectMs: connectMs ?? 0, lockTimeoutMs: lockWaitMs }) : db;
  let run: Awaited<ReturnType<Migrator['migrateToLatest']>>;
  try {
    run = await migrator(migrating).migrateToLatest();
  } finally {
    if (migrating !== db) await migrating.destroy();
  }
  const { error, results } = run;
  if (error) {
    const unreachable = url ? connectionFailure(url, error) : null;
    if (unreachable) throw unreachable;
    const failed = results?.find((r) => r.status === 'Error');
    if ((error as { code?: unknown }).code === '55P03')
      throw new LisError(
        'ERR_MIGRATION_LOCKED',
        `migration ${failed?.migrationName ?? '?'} waited ${lockWaitMs / 1000}s for a lock on a table another session holds, and gave up ` +
          `rather than hold up the daemons' statements on that table behind it; nothing was applied. Sessions in a transaction ` +
          `for longer: ${await longTransactions(db, lockWaitMs).catch(() => 'unknown')}. End or wait for that session, then run \`lis db migrate\` again`,
        { cause: error },
      );
    // All pending migrations run in one transaction (PostgreSQL's DDL is transactional): a failure undoes them all.
    const undone = `; nothing was applied (the ${status.missing.length} pending migration(s) run in one transaction), the schema is as it was`;
    const code = (error as { code?: unknown }).code;
    const hint =
      code === '42501'
        ? ` (${migrationPrivilegeHint(url)})`
        : code === '3F000'
          ? " (the role's search_path names no schema that exists: create it, or set the role's search_path to one, ALTER ROLE ... SET search_path; the daemons' role needs the same search_path)"
          : '';
    const why = `${errorMessage(error)}${hint}`;
    throw new LisError('ERR_MIGRATION', failed ? `migration ${failed.migrationName} failed: ${why}${undone}` : `cannot bring the schema up to date: ${why}`, {
      cause: error,
    });
  }
  return results ?? [];
}

/** The migrations not yet applied, by name. Throws when the database cannot be reached. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const migrations = await migrator(db).getMigrations();
  return migrations.filter((m) => m.executedAt === undefined).map((m) => m.name);
}

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

/** Drops and creates database `name` on the server of `serverUrl`; returns its URL. For benchmarks, the demo, tests. */
export async function recreateDatabase(serverUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new LisError('ERR_USAGE', `not a plain database name: ${JSON.stringify(name)}`);
  await dropDatabase(serverUrl, name);
  await onServer(serverUrl, (client) =>
    client.query(`CREATE DATABASE ${name}`).catch((error: Error & { code?: string }) => {
      if (error.code !== '42501') throw error;
      throw new LisError('ERR_DB_CREATE', `cannot create database ${name} at ${describeServer(serverUrl)}: ${error.message} (the role needs CREATEDB)`, {
        cause: error,
      });
    }),
  );
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Drops database `name`, ending its sessions (FORCE). A database of another role's is refused, saying so. A session of a superuser's on it cannot be ended by
 * our role (42501), and FORCE then ends none: after a bench's big drain that is autovacuum working on the database (also on a tiny
 * one, now and then: a test run's drop met it). The sessions our role may end are ended, and a plain DROP DATABASE follows, which
 * stops autovacuum itself and waits up to 5 s for the sessions to go; it fails with a clear message when someone's session stays.
 */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, (client) => dropDatabaseOn(client, name, serverUrl));
}

/** {@link dropDatabase} on a session of the server's already open (`serverUrl` names the server in errors). */
export async function dropDatabaseOn(client: pg.ClientBase, name: string, serverUrl: string): Promise<void> {
  const database = client.escapeIdentifier(name);
  try {
    await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    return;
  } catch (caught) {
    const error = caught as Error & { code?: string };
    if (error.code !== '42501') throw error;
    // Not its owner (a database another role made, on a server of the operator's): no session is to blame, and none is ended.
    if (/must be owner/.test(error.message))
      throw new LisError(
        'ERR_DB_NOT_OWNER',
        `cannot drop database ${name} at ${describeServer(serverUrl)}: ${error.message}; drop it as its owner, or use another database name`,
        { cause: error },
      );
  }
  // Those of roles whose privileges ours has (pg_terminate_backend's own rule): not a superuser's, nor autovacuum's (no role, NULL).
  await client.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND pg_has_role(usesysid, 'USAGE')`,
    [name],
  );
  await client.query(`DROP DATABASE IF EXISTS ${database}`).catch((again: Error) => {
    throw new LisError(
      'ERR_DB_IN_USE',
      `cannot drop database ${name}: a session our role may not end (a superuser's, another role's) is on it (${again.message})`,
      {
        cause: again,
      },
    );
  });
}

async function onServer(serverUrl: string, fn: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const admin = new URL(serverUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: clientUrl(admin.toString()) });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}
