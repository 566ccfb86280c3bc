import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { sql } from 'kysely';
import pg from 'pg';
import { runUpkeep, upkeepFromManager } from '../src/manager/run-upkeep.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { readLog } from './helpers/log-files.ts';

describe("the manager's scheduled upkeep (lis_cron_frontend --all)", () => {
  let t: TestDatabase;
  afterEach(async () => t.drop());

  /** Runs the upkeep as the manager's schedule does, with a logger writing the manager's files. */
  async function upkeep(configFile: string): Promise<{ code: number | null; log: string; errors: string }> {
    const log = createLogger({ component: 'managerd', log: t.config.log, screen: false });
    // Without the run's LIS_DATABASE_URL, which would win over the config file's database.
    const code = await runUpkeep(log, configFile, { ...process.env, LIS_DATABASE_URL: undefined });
    await closeLogger(log);
    const read = (name: string) => readLog(path.join(t.config.log.dir, name));
    return { code, log: read('managerd.log'), errors: fs.existsSync(path.join(t.config.log.dir, 'managerd.error.log')) ? read('managerd.error.log') : '' };
  }

  it('runs, with the config file the manager was given', async function () {
    this.timeout(60_000);
    t = await createTestDatabase();
    await t.db.insertInto('live_images').values({ country: 'uk', datasource_id: 16, image_url: 'http://feed.example.com/a.jpg' }).execute();
    const run = await upkeep(t.writeConfig({ services: { runDir: path.join(t.dir, 'run') } }));
    assert.equal(run.code, 0, run.log);
    assert.match(run.log, /INFO Manager::cron_frontend\[\d+\] lis_cron_frontend --all exited 0/);
    // It worked this test's database (named only in the config file), and said so in its own log.
    assert.match(readLog(path.join(t.config.log.dir, 'cron_frontend.log')), /Summary for UK/);
    assert.equal(run.errors, '');
  });

  it("logs a failure at error level, with the upkeep's last words", async function () {
    this.timeout(60_000);
    t = await createTestDatabase({ migrated: false });
    const run = await upkeep(t.writeConfig());
    assert.equal(run.code, 1);
    assert.match(run.errors, /ERROR Manager::cron_frontend\[\d+\] lis_cron_frontend --all exited 1: .*schema of .* is behind this code/);
  });
});

describe("the manager's scheduled upkeep on one of several hosts", () => {
  let t: TestDatabase;
  afterEach(async () => t.drop());

  it("records its own host's run that died without an outcome, though another host's run failed meanwhile", async function () {
    this.timeout(90_000);
    t = await createTestDatabase();
    // Host A (testhost, whose manager this is): an expired row it purges, held on that row's lock here.
    await t.db.insertInto('live_images').values({ country: 'uk', datasource_id: 16, image_url: 'http://feed.example.com/a.jpg' }).execute();
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    // Host B: a row of its own waiting to be pushed, and its thumbnail store not mounted: its run fails.
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, store_host) VALUES ('uk', 16, 'http://feed.example.com/b.jpg', 'push', 'hostb')`.execute(
      t.db,
    );
    const runDirA = path.join(t.dir, 'run');
    const configA = t.writeConfig({ services: { runDir: runDirA } });
    const b = path.join(t.dir, 'hostb');
    const configB = t.writeConfig({
      host: 'hostb',
      services: { runDir: path.join(b, 'run') },
      stores: { originals: path.join(b, 'originals'), thumbnails: path.join(b, 'thumbnails') },
      log: { dir: path.join(b, 'log') },
    });

    const other = new pg.Client({ connectionString: t.url });
    await other.connect();
    const log = createLogger({ component: 'managerd', log: t.config.log, screen: false });
    try {
      await other.query('BEGIN');
      await other.query(`SELECT 1 FROM live_images WHERE image_url = 'http://feed.example.com/a.jpg' FOR UPDATE`);
      const upkeep = upkeepFromManager(t.db, log, 'testhost', configA, { ...process.env, LIS_DATABASE_URL: undefined });
      await waitFor(
        async () => (await sql`SELECT 1 FROM pg_stat_activity WHERE datname = ${t.name} AND wait_event_type = 'Lock'`.execute(t.db)).rows.length > 0,
        30_000,
        "host A's upkeep to wait on the row",
      );
      const pidA = Number(fs.readFileSync(path.join(runDirA, 'cron_frontend.uk.lock'), 'utf8').split('\n')[0]);
      // Host B's run, meanwhile: it records its own failure.
      const runB = spawnTs('bin/lis_cron_frontend', ['--all', '--country', 'uk'], { LIS_CONFIG: configB });
      assert.equal((await runB.exited).code, 1, runB.output());
      // Host A's run dies without a word (out of memory, kill -9).
      process.kill(pidA, 'SIGKILL');
      await upkeep;
    } finally {
      await other.query('ROLLBACK').catch(() => {});
      await other.end();
      await closeLogger(log);
    }
    const events = await t.db.selectFrom('manager_events').select(['subject', 'detail']).where('check_name', '=', 'upkeep').orderBy('id').execute();
    assert.deepEqual(
      events.map((e) => e.subject),
      ['hostb', 'testhost'],
      `host A's failure is recorded: ${JSON.stringify(events)}`,
    );
    assert.match(events[1].detail, /^failed: lis_cron_frontend --all was killed \(SIGKILL\)/);
  });
});
