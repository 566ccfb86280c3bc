import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfig } from '../../src/config/load-config.ts';
import type { LisConfig, LisConfigInput } from '../../src/config/config-schema.ts';
import { createDb, databaseUrl, dropDatabase, migrateToLatest, recreateDatabase, type Db } from '../../src/db/connect.ts';

// One per test run, so that runs side by side (several checkouts, CI) do not clobber each other's.
export const TEMPLATE_DB = `lis_test_template_${process.pid}`;

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

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const url = withDatabase(await databaseUrl(baseTestConfig()), 'postgres');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

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

export async function dropTemplate(): Promise<void> {
  await dropDatabase(await databaseUrl(baseTestConfig()), TEMPLATE_DB);
}

/** A fresh, migrated database of its own (copied from the template) and a temp folder. */
export async function createTestDatabase(options: { migrated?: boolean; overrides?: LisConfigInput } = {}): Promise<TestDatabase> {
  const name = `lis_test_${crypto.randomBytes(5).toString('hex')}`;
  await admin((client) => client.query(`CREATE DATABASE ${name}${options.migrated === false ? '' : ` TEMPLATE ${TEMPLATE_DB}`}`));
  const url = withDatabase(await databaseUrl(baseTestConfig()), name);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-test-'));
  const input = (overrides: LisConfigInput = {}): LisConfigInput => ({
    host: 'testhost',
    ...overrides,
    database: { url, poolSize: 4, ...overrides.database },
    stores: { originals: path.join(dir, 'originals'), thumbnails: path.join(dir, 'thumbnails'), ...overrides.stores },
    log: { dir: path.join(dir, 'log'), ...overrides.log },
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
      await dropDatabase(await databaseUrl(baseTestConfig()), name);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
