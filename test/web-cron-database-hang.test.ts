// `lis web`, `lis db status` and lis_cron_frontend against a database that hangs (accepts, or keeps, the connection and never
// answers): each says so within the config's bounds rather than hanging silently.
import assert from 'node:assert/strict';
import { lis_hash_for_url } from '../src/hash/image-hash.ts';
import { startDatabaseProxy, type DatabaseProxy } from './helpers/database-proxy.ts';
import { insertUrls } from './helpers/rows.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';

/** Short bounds, so that a test sees them run out. */
const TEST_DATABASE_BOUNDS = { connectTimeoutSeconds: 1, queryTimeoutSeconds: 1.5 };

describe('lis web, lis db status and lis_cron_frontend against a database that hangs', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let relay: DatabaseProxy;
  const spawned: Spawned[] = [];

  beforeEach(async () => {
    t = await createTestDatabase();
    relay = await startDatabaseProxy(t.url);
  });
  afterEach(async () => {
    for (const run of spawned.splice(0)) {
      run.child.kill('SIGKILL');
      await run.exited;
    }
    await relay.cut();
    await t.drop();
  });

  const configFile = (more: Record<string, unknown> = {}) => t.writeConfig({ database: { url: relay.url, ...TEST_DATABASE_BOUNDS }, ...more });

  /** `lis web` through the proxy, once it says where it listens; `lookup` asks its API for an image. */
  const startWeb = async () => {
    const web = spawnTs('bin/lis', ['--config', configFile(), 'web', '--port', '0']);
    spawned.push(web);
    await waitFor(() => /status page at (http:\S+)/.test(web.output()), 30_000, 'lis web').catch((error: Error) => {
      throw new Error(`${error.message}:\n${web.output()}`);
    });
    const base = /status page at (http:\S+)/.exec(web.output())![1];
    const lookup = () => fetch(new URL(`api/lookup?q=${lis_hash_for_url('http://feed.example.com/1.jpg')}`, base));
    return { web, lookup };
  };

  it('lis web answers 503 ERR_DATABASE_TIMEOUT at the query bound while the database hangs, and answers again once it is back', async () => {
    const { lookup } = await startWeb();
    assert.equal((await lookup()).status, 200);

    relay.stall();
    const hung = await lookup();
    assert.equal(hung.status, 503);
    const body = (await hung.json()) as { error: string; code: string };
    assert.equal(body.code, 'ERR_DATABASE_TIMEOUT');
    assert.match(body.error, /the database at 127\.0\.0\.1:\d+\/\w+ as \w+ is not answering: no (reply to a query in 1\.5 s|answer to a connect in 1 s)/);

    relay.mend();
    assert.equal((await lookup()).status, 200, 'the next request, on a new connection');
  });

  /** Resolves with `run`'s exit once it has exited; fails, with its output, after `ms`. */
  const exitWithin = async (run: Spawned, ms: number, what: string) => {
    await waitFor(() => run.child.exitCode !== null || run.child.signalCode !== null, ms, what).catch((error: Error) => {
      throw new Error(`${error.message}:\n${run.output()}`);
    });
    return run.exited;
  };

  it('lis web stopped while the database hangs exits: its idle connections, their goodbye unanswered, are cut at the connect bound', async () => {
    const { web, lookup } = await startWeb();
    // A page's reads leave the pool a connection, idle, when the path goes silent.
    assert.equal((await lookup()).status, 200);
    relay.stall();
    web.child.kill('SIGTERM');
    // Before, the pool's end waited for the server's close of that connection, which a silent path never brings.
    const exit = await exitWithin(web, 15_000, 'lis web to exit after SIGTERM while the database hangs');
    assert.equal(exit.code, 0, web.output());
  });

  /** `lis db status` run while `silent` (a stall of the proxy's) waits for its moment: its output, once it has exited 3. */
  const statusOnceSilent = async (silent: Promise<void>) => {
    const status = spawnTs('bin/lis', ['--config', configFile(), 'db', 'status']);
    spawned.push(status);
    await within(silent, 'the path gone silent', 30_000);
    const exit = await exitWithin(status, 15_000, 'lis db status to exit');
    assert.equal(exit.code, 3, status.output());
    return status.output();
  };

  it('lis db status against a database that stops answering mid-way says so at the query bound (exit 3), and exits', async () => {
    // The status's schema check reaches the server; its answer, and every byte after, is lost.
    const output = await statusOnceSilent(relay.stallAfter('kysely_migration'));
    assert.match(output, /the database at 127\.0\.0\.1:\d+\/\w+ as \w+ is not answering: no reply to a query in 1\.5 s/);
  });

  it("lis db status whose server stops answering once it has answered the start-up check exits (3): the check's own connection is cut at the connect bound", async () => {
    // The pooler check's second connection commits, has its answer, and says goodbye into a path gone silent.
    // Before, pg's end of that connection waited for the server's close for ever, and the status said nothing.
    const output = await statusOnceSilent(relay.stallAfterReply('COMMIT'));
    assert.match(output, /^server: PostgreSQL \d+/m);
    assert.match(output, /is not answering: no reply to a query in 1\.5 s/);
  });

  it('lis db migrate whose server stops answering once the migration is done says what it applied and exits 0', async () => {
    const fresh = await createTestDatabase({ migrated: false });
    const freshRelay = await startDatabaseProxy(fresh.url);
    try {
      // The migration commits and gives back its lock (Kysely's unlock, its last statement), and has the answers; the
      // goodbyes after them go into a silent path. (A freeze before that answer holds the unlock, which no query bound cuts.)
      const committed = freshRelay.stallAfterReply('pg_advisory_unlock');
      const config = fresh.writeConfig({ database: { url: freshRelay.url, ...TEST_DATABASE_BOUNDS } });
      const migrate = spawnTs('bin/lis', ['--config', config, 'db', 'migrate']);
      spawned.push(migrate);
      await within(committed, 'the migration done', 30_000);
      // Before, the migration's own connection waited for the server's close for ever: no word of what was applied.
      // Its connection waits 10 s for the server's close (lis db migrate has no connect bound), then is cut.
      const exit = await exitWithin(migrate, 30_000, 'lis db migrate to exit');
      assert.equal(exit.code, 0, migrate.output());
      assert.match(migrate.output(), /^applied \S+/m);
    } finally {
      await freshRelay.cut();
      await fresh.drop();
    }
  });

  it('lis_cron_frontend fails at the connect bound with a clear error (exit 1) when the database hangs', async () => {
    await insertUrls(t.db, 'uk', 3);
    relay.hang();
    const cron = spawnTs('bin/lis_cron_frontend', ['--db_scan', '--country', 'uk', '--config', configFile()]);
    spawned.push(cron);
    const exit = await cron.exited;
    assert.equal(exit.code, 1, cron.output());
    assert.match(cron.output(), /the database at 127\.0\.0\.1:\d+\/\w+ as \w+ is not answering: no answer to a connect in 1 s/);
  });

  it("lis_cron_frontend's db_scan, which no query bound cuts, says every upkeep.progressMinutes that it is still running while the database does not answer", async () => {
    await insertUrls(t.db, 'uk', 3);
    // The connect bound roomy (connects are not what this is about: on a loaded machine 1 s may not do), the query
    // bound as short as ever: the scan outlives it.
    const config = t.writeConfig({
      database: { url: relay.url, ...TEST_DATABASE_BOUNDS, connectTimeoutSeconds: 10 },
      upkeep: { ...t.config.upkeep, progressMinutes: 0.01 },
    });
    // The scan's first read of expired rows reaches the server; its answer, and every byte after, is lost.
    const scanSent = relay.stallAfter('last_seen <');
    const cron = spawnTs('bin/lis_cron_frontend', ['--db_scan', '--country', 'uk', '--config', config]);
    spawned.push(cron);
    const told = (error: Error) => {
      throw new Error(`${error.message}:\n${cron.output()}`);
    };
    // Raced with its exit: a run that failed before its scan never sends it.
    await within(
      Promise.race([scanSent, cron.exited.then(() => Promise.reject(new Error('lis_cron_frontend exited before its scan')))]),
      'the scan sent',
      30_000,
    ).catch(told);
    // Four lines 0.6 s apart: the scan is still waiting well past the query bound (1.5 s).
    await waitFor(() => (cron.output().match(/UK: db_scan still running after/g) ?? []).length >= 4, 30_000, 'four "still running" lines').catch(told);
    assert.match(cron.output(), /WARN .*UK: db_scan still running after \d+ s \(a long purge, or a database that does not answer: see pg_stat_activity\)/);
    assert.equal(cron.child.exitCode, null, 'the scan is still waiting: it is not cut');
  });
});
