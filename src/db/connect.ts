import path from 'node:path';
import { promises as fs } from 'node:fs';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, type MigrationResult } from 'kysely';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError, errorMessage } from '../errors.ts';
import { ensureEmbeddedRunning } from './embedded-server.ts';
import { registerPool } from './prepared-query.ts';
import { MIGRATIONS_DIR, assertSchemaCurrent } from './schema-version.ts';
import { abortableDelay } from '../util/abortable-delay.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export { MIGRATIONS_DIR };

/** The configured server's URL, or the embedded server's, started if need be. */
export async function databaseUrl(config: LisConfig): Promise<string> {
  return config.database.url ?? (await ensureEmbeddedRunning(config.database.embedded));
}

/** The URL each Db was made for, so that a failure to connect can name the server. */
const urls = new WeakMap<Db, string>();

/** `127.0.0.1:54329/imagesys as imagesys`: where a URL leads, without its password. */
export function describeServer(url: string): string {
  try {
    const u = new URL(url);
    const user = decodeURIComponent(u.username);
    return `${u.hostname || 'localhost'}:${u.port || 5432}${u.pathname || '/'}${user ? ` as ${user}` : ''}`;
  } catch {
    return redactUrl(url);
  }
}

/** Errors that mean the server could not be reached or would not let us in (no query ran). */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  '28P01',
  '28000',
  '3D000',
  '57P03',
  '53300',
]);

/**
 * pg's words for a connection lost under a query: the socket closed, or a pooled client whose connection
 * broke before it was handed out ("Client has encountered a connection error and is not queryable").
 */
const LOST_CONNECTION = /Connection terminated|timeout expired|connect ETIMEDOUT|is not queryable/i;

/**
 * A failure to connect as an operator should read it: "cannot connect to the
 * database at 127.0.0.1:54329/imagesys as imagesys: connect ECONNREFUSED
 * ..." (what the server is, never the password). Null for other errors.
 */
export function connectionFailure(url: string, error: unknown): LisError | null {
  const e = error as { code?: string; message?: string };
  const connectish = CONNECT_CODES.has(e?.code ?? '') || LOST_CONNECTION.test(e?.message ?? '');
  if (!connectish) return null;
  const hint = e.code === 'ECONNREFUSED' ? ' (is the server running? `npx lis db status`)' : e.code === '28P01' ? ' (wrong password)' : '';
  return new LisError('ERR_DATABASE', `cannot connect to the database at ${describeServer(url)}: ${errorMessage(error)}${hint}`, { cause: error });
}

/** A Kysely instance over a pg pool. An idle connection that dies (a server restart) is logged, not fatal. */
export function createDb(url: string, poolSize: number, onPoolError: (error: Error) => void = () => {}): Db {
  const pool = new pg.Pool({ connectionString: url, max: poolSize, application_name: `imagesys:${path.basename(process.argv[1] ?? 'node')}` });
  // pg emits 'error' on a client whose server connection dies, even while it is checked out and its
  // query is being rejected; the pool listens only to idle clients. Without a listener of our own, a
  // PostgreSQL restart would crash the process instead of failing the query in hand.
  pool.on('connect', (client) => client.on('error', onPoolError));
  pool.on('error', onPoolError);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  registerPool(db, pool);
  urls.set(db, url);
  return db;
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
export async function migrateToLatest(db: Db): Promise<MigrationResult[]> {
  const { error, results } = await migrator(db).migrateToLatest();
  if (error) {
    const url = urls.get(db);
    const unreachable = url ? connectionFailure(url, error) : null;
    if (unreachable) throw unreachable;
    const failed = results?.find((r) => r.status === 'Error');
    throw new LisError(
      'ERR_MIGRATION',
      failed ? `migration ${failed.migrationName} failed: ${errorMessage(error)}` : `cannot bring the schema up to date: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  return results ?? [];
}

/** The migrations not yet applied, by name. Throws when the database cannot be reached. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const migrations = await migrator(db).getMigrations();
  return migrations.filter((m) => m.executedAt === undefined).map((m) => m.name);
}

/**
 * Connects (starting the embedded server when no URL is configured). With the
 * embedded default it also migrates, which is what a newcomer needs; against a
 * configured server the schema is an operator's step (`lis db migrate`), so it
 * is only checked: ERR_SCHEMA_BEHIND when this code knows newer migrations.
 * `migrate: true` always migrates (the demo's own database, `lis db`).
 */
export async function openDatabase(config: LisConfig, options: { onPoolError?: (error: Error) => void; migrate?: boolean } = {}): Promise<Db> {
  const url = await databaseUrl(config);
  const db = createDb(url, config.database.poolSize, options.onPoolError);
  try {
    if (options.migrate ?? config.database.url === null) await migrateToLatest(db);
    else await assertSchemaCurrent(db, redactUrl(url));
  } catch (error) {
    await db.destroy();
    if (error instanceof LisError) throw error;
    throw (
      connectionFailure(url, error) ??
      new LisError('ERR_DATABASE', `cannot use the database at ${describeServer(url)}: ${errorMessage(error)}`, { cause: error })
    );
  }
  return db;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

/**
 * openDatabase for services: a database that is down at start-up (restarting,
 * not up yet after a reboot) is waited for, with backoff, for up to
 * `retryForMs`; a run by hand should fail at once instead.
 */
export async function openDatabaseWaiting(
  config: LisConfig,
  options: { retryForMs: number; signal: AbortSignal; onRetry: (message: string) => void; onPoolError?: (error: Error) => void },
): Promise<Db> {
  const deadline = Date.now() + options.retryForMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await openDatabase(config, { onPoolError: options.onPoolError });
    } catch (error) {
      const code = (error as { code?: string }).code;
      // A bad config or a broken migration will not mend itself: only outages are waited out.
      if (
        code === 'ERR_CONFIG' ||
        code === 'ERR_SCHEMA_BEHIND' ||
        (error instanceof LisError && error.code === 'ERR_MIGRATION' && /migration \S+ failed/.test(error.message))
      )
        throw error;
      if (Date.now() > deadline || options.signal.aborted) throw error;
      const delay = Math.min(30_000, 500 * 2 ** attempt);
      options.onRetry(`database not reachable (${errorMessage(error)}); trying again in ${Math.round(delay / 1000)}s`);
      await abortableDelay(delay, options.signal);
      if (options.signal.aborted) throw error;
    }
  }
}

/** Drops and creates database `name` on the server of `serverUrl`; returns its URL. For benchmarks, the demo, tests. */
export async function recreateDatabase(serverUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new LisError('ERR_USAGE', `not a plain database name: ${JSON.stringify(name)}`);
  await dropDatabase(serverUrl, name);
  await onServer(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Drops database `name`, ending its sessions (FORCE). A session of a superuser's on it cannot be ended by
 * our role (42501): after a bench's big drain that is autovacuum working on the database, which a plain
 * DROP DATABASE stops itself (waiting up to 5 s for it), so that is tried next; it fails with a clear
 * message when someone's session is still there.
 */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, async (client) => {
    const database = client.escapeIdentifier(name);
    try {
      await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    } catch (error) {
      if ((error as { code?: string }).code !== '42501') throw error;
      await client.query(`DROP DATABASE IF EXISTS ${database}`).catch((again: Error) => {
        throw new LisError('ERR_DB_IN_USE', `cannot drop database ${name}: a superuser's session is on it (${again.message})`, { cause: again });
      });
    }
  });
}

async function onServer(serverUrl: string, fn: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const admin = new URL(serverUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}
