import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { runUpkeep } from '../src/manager/run-upkeep.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe("the manager's scheduled upkeep (lis_cron_frontend --all)", () => {
  let t: TestDatabase;
  afterEach(async () => t.drop());

  /** Runs the upkeep as the manager's schedule does, with a logger writing the manager's files. */
  async function upkeep(configFile: string): Promise<{ code: number | null; log: string; errors: string }> {
    const log = createLogger({ component: 'managerd', log: t.config.log, screen: false });
    // Without the run's LIS_DATABASE_URL, which would win over the config file's database.
    const code = await runUpkeep(log, configFile, { ...process.env, LIS_DATABASE_URL: undefined });
    await closeLogger(log);
    const read = (name: string) => fs.readFileSync(path.join(t.config.log.dir, name), 'utf8');
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
    assert.match(fs.readFileSync(path.join(t.config.log.dir, 'cron_frontend.log'), 'utf8'), /Summary for UK/);
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
