import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promises as fs } from 'node:fs';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, type MigrationResult } from 'kysely';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError, errorMessage } from '../errors.ts';
import { ensureEmbeddedRunning } from './embedded-server.ts';
import { registerPool } from './prepared-query.ts';
import { abortableDelay } from '../util/abortable-delay.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

/** The configured server's URL, or the embedded server's, started if need be. */
export async function databaseUrl(config: LisConfig): Promise<string> {
  return config.database.url ?? (await ensureEmbeddedRunning(config.database.embedded));
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
    const failed = results?.find((r) => r.status === 'Error');
    throw new LisError('ERR_MIGRATION', failed ? `migration ${failed.migrationName} failed: ${errorMessage(error)}` : `cannot bring the schema up to date: ${errorMessage(error)}`, { cause: error });
  }
  return results ?? [];
}

/** Connects (starting the embedded server when no URL is configured) and migrates. */
export async function openDatabase(config: LisConfig, options: { onPoolError?: (error: Error) => void; migrate?: boolean } = {}): Promise<Db> {
  const url = await databaseUrl(config);
  const db = createDb(url, config.database.poolSize, options.onPoolError);
  try {
    if (options.migrate !== false) await migrateToLatest(db);
  } catch (error) {
    await db.destroy();
    if (error instanceof LisError) throw error;
    throw new LisError('ERR_DATABASE', `cannot use the database at ${redactUrl(url)}: ${errorMessage(error)}`, { cause: error });
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
      if (code === 'ERR_CONFIG' || (error instanceof LisError && error.code === 'ERR_MIGRATION' && /migration \S+ failed/.test(error.message))) throw error;
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

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`));
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
