import { execFileSync } from 'node:child_process';
// First: every child a test process starts from here on is killed when that process ends (see the file).
import './reap-children.ts';
import path from 'node:path';
import { embeddedStatus, stopEmbedded } from '../../src/db/embedded-server.ts';
import { bundleFixtures, removeFixtureBundles } from './fixture-bundles.ts';
import { ROOT } from './processes.ts';
import { baseTestConfig, dropTemplate, prepareTemplate, settleTestDatabases } from './test-database.ts';

/**
 * Every fetch a test makes without a signal of its own gives up after this long. Node's fetch waits up to 300 s
 * for headers: one that hangs outlasts mocha's timeout, which then leaves the test's `finally` (where it stops the
 * processes it started) unreached, and the process alive after the run (a lis_managerd was, once).
 */
const FETCH_DEADLINE_MS = 30_000;
const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init) => plainFetch(input, init?.signal ? init : { ...init, signal: AbortSignal.timeout(FETCH_DEADLINE_MS) });

/** Whether this run started the embedded PostgreSQL (no LIS_DATABASE_URL, and it was not running): then it stops it. */
let startedEmbedded = false;

/** Builds dist/ if stale and the fixtures' bundles; starts (or finds) the real PostgreSQL and migrates the template every test database is copied from. */
export async function mochaGlobalSetup(): Promise<void> {
  // Tests that spawn bin/* run the compiled dist/: rebuild it when a source file changed since the last build.
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs'), '--if-stale'], { stdio: 'inherit' });
  const { database } = baseTestConfig();
  startedEmbedded = !database.url && !embeddedStatus(database.embedded).running;
  // The fixtures' bundles (esbuild, about 0.9 s) made while the server migrates the template.
  await Promise.all([bundleFixtures(ROOT), prepareTemplate()]);
}

/**
 * Root hooks. afterAll: the test databases still being dropped in the background are settled, and the spare copy
 * made: once at the end of a serial run; with --parallel, in each worker after each of its files. The spare is
 * kept for the worker's next file; the global teardown below (in the main process) drops the last ones by name.
 */
export const mochaHooks = {
  async afterAll(): Promise<void> {
    await settleTestDatabases({ keepSpare: true });
  },
};

/** Drops the template; a server this run started is stopped, one found running (`lis db start`) is left as found. */
export async function mochaGlobalTeardown(): Promise<void> {
  removeFixtureBundles();
  try {
    await dropTemplate();
  } finally {
    if (startedEmbedded) await stopEmbedded(baseTestConfig().database.embedded);
  }
}
