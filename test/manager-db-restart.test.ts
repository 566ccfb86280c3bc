import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { parseConfig } from '../src/config/load-config.ts';
import type { Db } from '../src/db/connect.ts';
import { openDatabase } from '../src/db/open-database.ts';
import { registerWorker } from '../src/daemon/worker-registry.ts';
import { releaseStuckJobs } from '../src/manager/stuck-jobs.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { freePort } from './helpers/free-port.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { killServerAtExit } from './helpers/reap-children.ts';

/**
 * The database itself restarting is our fault, not the workers': while it is down no worker can beat, so
 * right after it comes back every heartbeat is old. A server of its own, since the shared one is not ours to stop.
 */
describe('stuck_jobs after the database restarted', function () {
  this.timeout(120_000);
  let dir: string;
  let configFile: string;
  let db: Db | null = null;
  const lis = async (...args: string[]) => {
    const run = spawnTs('bin/lis', ['--config', configFile, ...args], { LIS_DATABASE_URL: '' });
    assert.equal((await run.exited).code, 0, run.output());
  };
  const open = async () => openDatabase(parseConfig(JSON.parse(fs.readFileSync(configFile, 'utf8')), { LIS_DATABASE_URL: '' }, dir, 'test config'));

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-restart-'));
    configFile = path.join(dir, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify({ database: { embedded: { dataDir: path.join(dir, 'pg'), port: await freePort() } } }));
    killServerAtExit(path.join(dir, 'pg'));
    await lis('db', 'start');
  });
  after(async () => {
    await db?.destroy();
    try {
      await lis('db', 'stop');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('blames no worker for the outage: a heartbeat missed while the server was down is not a dead worker', async () => {
    db = await open();
    await insertUrls(db, 'uk', 5);
    await registerWorker(db, { id: 'h1:4242:download', component: 'downloadd', host: 'h1', pid: 4242, country: 'uk' });
    await sql`UPDATE live_images SET locked_by = 'h1:4242:download', locked_at = now()`.execute(db);
    await sql`UPDATE workers SET holding = 5`.execute(db);
    await db.destroy();
    db = null;
    await lis('db', 'stop');
    // Down for longer than the stale limit, as far as the heartbeats can tell.
    await lis('db', 'start');
    db = await open();
    await sql`UPDATE workers SET heartbeat_at = now() - interval '2 minutes', progress_at = now() - interval '2 minutes'`.execute(db);

    assert.deepEqual(await releaseStuckJobs(db, 60, undefined, 90), [], 'up for less than staleWorkerSeconds: nobody could have beaten');
    assert.deepEqual(await countBy(db), { 'download/waiting/locked': 5 });
    assert.equal((await db.selectFrom('workers').select('stopped_at').executeTakeFirstOrThrow()).stopped_at, null);

    // Once the server has been up for the stale limit, a worker that still has not beaten is dead.
    await waitFor(
      async () => (await sql<{ up: number }>`SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS up`.execute(db!)).rows[0].up > 2,
      20_000,
      'the server up for 2 s',
    );
    const released = await releaseStuckJobs(db, 2, undefined, 3);
    assert.deepEqual(
      released.map((w) => [w.workerId, w.rows]),
      [['h1:4242:download', 5]],
    );
    assert.deepEqual(await countBy(db), { 'download/waiting': 5 });
  });
});
