import path from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError } from '../errors.ts';
import { settledWithin } from '../util/settled-within.ts';
import { boundedClient } from './bounded-client.ts';
import { clientUrl } from './client-config.ts';
import { ensureEmbeddedRunning } from './embedded-server.ts';
import { preparingClient } from './prepared-query.ts';
import { sessionSettingsOf, type QueryBounds } from './query-bounds.ts';
import { withSessionSettings } from './session-settings.ts';
import { askSslPrefer } from './ssl-prefer.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

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

/** The URL and connect bound `db` was made with (createDb), or undefined: for a connection of its own beside the pool (a migration's). */
export function madeWith(db: Db): { url?: string; connectMs?: number } {
  return { url: urls.get(db), connectMs: connectBounds.get(db) };
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
