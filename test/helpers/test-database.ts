import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfig } from '../../src/config/load-config.ts';
import type { LisConfig, LisConfigInput } from '../../src/config/config-schema.ts';
import { createDb, databaseUrl, type Db } from '../../src/db/connect.ts';
import { migrateToLatest } from '../../src/db/migrate-schema.ts';
import { dropDatabaseOn, recreateDatabase } from '../../src/db/recreate-database.ts';

// One per test run, so that runs side by side (several checkouts, CI) do not clobber each other's. Named by
// the process that makes it (mocha's global setup) and passed on in the environment: with --parallel the test
// files run in worker processes, which would otherwise look for a template named by their own pid.
export const TEMPLATE_DB = (process.env.LIS_TEST_TEMPLATE_DB ??= `lis_test_template_${process.pid}`);

/**
 * The server the tests use: LIS_DATABASE_URL when set, else the embedded one
 * with the built-in defaults (a real PostgreSQL either way). A config file in
 * the working folder is ignored, so a developer's settings cannot change results.
 */
export function baseTestConfig(): LisConfig {
  return parseConfig({}, process.env, process.cwd(), 'test config');
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Sessions on the server's `postgres` database for this process's CREATE and DROP DATABASE, kept between tests: a
 * connection of its own each (about two a test, 1,400 a run) cost the server a backend start each, ~20 ms of CPU
 * on a 2-core VM, and the client a SCRAM exchange. Two, so a copy made ahead and a drop behind still overlap; the
 * pool makes a lost one again, and lets the process exit while they are idle.
 */
let adminPool: Promise<pg.Pool> | null = null;

async function openAdminPool(): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: withDatabase(await databaseUrl(baseTestConfig()), 'postgres'), max: 2, allowExitOnIdle: true });
  // An idle session the server ended (a restart): the pool drops it and makes another when asked.
  pool.on('error', () => {});
  return pool;
}

async function admin<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  adminPool ??= openAdminPool().catch((error: Error) => {
    adminPool = null;
    throw error;
  });
  const client = await (await adminPool).connect();
  let broken: Error | undefined;
  try {
    return await fn(client);
  } catch (error) {
    // A failed statement leaves the session sound; a lost connection does not: dropped rather than reused.
    if (!(error instanceof pg.DatabaseError) || error.severity === 'FATAL') broken = error as Error;
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * The product's drop (its sessions ended first) on an admin session; the name is one this run made. Our role is no superuser: autovacuum on
 * the database, now and then, fails FORCE (42501, "permission denied to terminate process", a CI run's end once), which dropDatabaseOn handles.
 */
const dropTestDatabase = (name: string) => admin(async (client) => dropDatabaseOn(client, name, await databaseUrl(baseTestConfig())));

/** Once per run: a migrated template database that each test database is copied from. */
export async function prepareTemplate(): Promise<void> {
  const db = createDb(await recreateDatabase(await databaseUrl(baseTestConfig()), TEMPLATE_DB), 1);
  try {
    await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  db: Db;
  /** A full config pointing at this database, with stores and logs under a temp folder. */
  config: LisConfig;
  /** The temp folder (stores, logs, config files). */
  dir: string;
  /** Writes `config` (with overrides) as a JSON file for child processes; returns its path. */
  writeConfig(overrides?: LisConfigInput): string;
  drop(): Promise<void>;
}

/**
 * The end of the run (mocha's global teardown): the databases still being dropped settled, every database of this
 * run left (the spare each --parallel worker kept to its end, one whose drop failed) dropped, then the template.
 */
export async function dropTemplate(): Promise<void> {
  await settleTestDatabases();
  const left = await admin((client) =>
    client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [RUN_DATABASE_PREFIX]),
  );
  for (const { datname } of left.rows) await dropTestDatabase(datname);
  await dropTestDatabase(TEMPLATE_DB);
  const pool = adminPool;
  adminPool = null;
  await (await pool)?.end();
}

/** This run's test databases are named for its template (`lis_test_<pid>_...`): the end of the run finds them all. */
const RUN_DATABASE_PREFIX = `${TEMPLATE_DB.replace(/^lis_test_template_/, 'lis_test_')}_`;
const newName = () => `${RUN_DATABASE_PREFIX}${crypto.randomBytes(5).toString('hex')}`;

async function copyTemplate(): Promise<string> {
  const name = newName();
  await admin((client) => client.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`));
  return name;
}

/**
 * The next test's migrated database, copied from the template while the current test runs: a copy costs
 * about 0.3 s (mostly the server writing and syncing the template's 8 MB), over 300 times a run, and the
 * tests mostly wait on processes and timers meanwhile. It is untouched until taken, so as fresh as one made
 * on the spot; one that failed (the server restarted meanwhile) is made again when asked for.
 */
let spare: Promise<string> | null = null;

async function takeMigratedDatabase(): Promise<string> {
  const ready = spare;
  spare = null;
  const name = (ready && (await ready.catch(() => null))) || (await copyTemplate());
  spare = copyTemplate();
  spare.catch(() => {}); // handled when taken (made again) or at the end of the run
  return name;
}

/**
 * Dropping a used database (about 0.1-0.5 s under load) goes on while the next test runs: its sessions are
 * ended first (FORCE) and nothing reads it again. The end of the run waits for these, tries again any that
 * failed (the server restarting meanwhile) and drops the unused spare.
 */
const dropping = new Set<Promise<void>>();
const dropFailed: string[] = [];

function dropLater(name: string, dir: string): void {
  const done: Promise<void> = (async () => {
    try {
      await dropTestDatabase(name);
    } catch {
      dropFailed.push(name);
    }
    await fs.promises.rm(dir, { recursive: true, force: true }).catch(() => {});
  })().finally(() => dropping.delete(done));
  dropping.add(done);
}

/**
 * The background drops finished (failed ones tried again), and the spare made. `keepSpare` (the end of a test file
 * in a --parallel worker): the spare is kept for the worker's next file, whose first test then need not wait for a
 * copy (0.2-0.4 s, about 70 files a run); the global teardown drops the one left at the end (dropTemplate). Else
 * (the end of the run) it is dropped.
 */
export async function settleTestDatabases(options: { keepSpare?: boolean } = {}): Promise<void> {
  const last = spare;
  spare = null;
  const unused = last && (await last.catch(() => null));
  if (unused && options.keepSpare) spare = Promise.resolve(unused);
  else if (unused) dropFailed.push(unused);
  while (dropping.size) await Promise.all([...dropping]);
  for (const name of dropFailed.splice(0)) await dropTestDatabase(name);
}

/** A fresh, migrated database of its own (copied from the template) and a temp folder. */
export async function createTestDatabase(options: { migrated?: boolean; overrides?: LisConfigInput } = {}): Promise<TestDatabase> {
  let name: string;
  if (options.migrated === false) {
    name = newName();
    await admin((client) => client.query(`CREATE DATABASE ${name}`));
  } else name = await takeMigratedDatabase();
  const url = withDatabase(await databaseUrl(baseTestConfig()), name);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-test-'));
  const input = (overrides: LisConfigInput = {}): LisConfigInput => ({
    host: 'testhost',
    ...overrides,
    database: { url, poolSize: 4, ...overrides.database },
    stores: { originals: path.join(dir, 'originals'), thumbnails: path.join(dir, 'thumbnails'), ...overrides.stores },
    log: { dir: path.join(dir, 'log'), ...overrides.log },
    // Pid, lock and metrics-URL files in the test's folder, not the checkout's ./var/run: a daemon a test kills
    // leaves its lock there, which the next run (or a person's by hand) would meet.
    services: { runDir: path.join(dir, 'run'), ...overrides.services },
  });
  const config = parseConfig(input(options.overrides), {}, dir, 'test config');
  const db = createDb(url, 8);
  return {
    name,
    url,
    db,
    config,
    dir,
    writeConfig(overrides) {
      const file = path.join(dir, `config-${crypto.randomBytes(3).toString('hex')}.json`);
      fs.writeFileSync(file, JSON.stringify(input({ ...options.overrides, ...overrides })));
      return file;
    },
    async drop() {
      await db.destroy();
      dropLater(name, dir);
    },
  };
}

/** What a test leaves to be undone after it: run in reverse order, failed or not. */
export type Cleanups = Array<() => Promise<void> | void>;

/**
 * For a describe block: each test gets a fresh test database (handed to `use`) and a list of cleanups, run
 * in reverse after the test, failed or not, before its database is dropped (a process still connected to it
 * would hold the drop).
 */
export function databasePerTest(use: (t: TestDatabase) => void, options?: Parameters<typeof createTestDatabase>[0]): Cleanups {
  const cleanups: Cleanups = [];
  let current: TestDatabase | undefined;
  beforeEach(async () => use((current = await createTestDatabase(options))));
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await current?.drop();
    current = undefined;
  });
  return cleanups;
}
