import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { redownloadFromGoneHosts } from '../src/manager/stuck-jobs.ts';
import { pruneStats } from '../src/manager/run-check.ts';
import { reworkRows } from '../src/queue/rework-rows.ts';
import { countBy, insertUrls, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** A worker of `host` that stopped `ago` (an SQL interval) ago: the host's last sign of life. */
async function workerOf(t: TestDatabase, host: string, ago: string): Promise<void> {
  await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at, stopped_at)
            VALUES (${`${host}:1:${ago}`}, 'thumbnaild', ${host}, 1, now() - ${ago}::interval, now() - ${ago}::interval)`.execute(t.db);
}

/** Every row made live from `host`'s stores (as lis_pusherd leaves them), its files only there. */
async function liveOn(t: TestDatabase, host: string): Promise<void> {
  const data = JSON.stringify({ presets: { small: { width: 120, height: 90, bytes: 1, path: 'x' } } });
  await sql`UPDATE live_images SET stage = 'live', state = 'done', store_host = ${host}, image_data = ${data}::jsonb, live_data = ${data}::jsonb`.execute(t.db);
  await relistAll(t.db);
}

describe('many hosts on one database: a host gone for good', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it("rows of a gone host that reach thumbnail or push after it was handled (a rethumbnail, fs_check's re-push) are sent back to download too", async () => {
    await insertUrls(t.db, 'uk', 3);
    await liveOn(t, 'oldhost');
    await workerOf(t, 'oldhost', '3 days');
    // Handled once: nothing of it waits in thumbnail or push yet.
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [{ host: 'oldhost', rows: 0 }]);
    // Then the operator rethumbnails (a new preset): the rows wait for oldhost's lis_thumbnaild, which is gone.
    assert.equal(await reworkRows(t.db, 'thumbnail', { country: 'uk', limit: 2 }), 2);
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [{ host: 'oldhost', rows: 2 }]);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 2, 'live/done': 1 });
    // And a frontend found lacking a live row's files (fs_check sends it back to the pusher).
    assert.equal(await reworkRows(t.db, 'push', { country: 'uk' }), 1);
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost', 'uk'), [{ host: 'oldhost', rows: 1 }]);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 3 });
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [], 'nothing left of it: nothing done, nothing recorded');
    const events = await t.db.selectFrom('manager_events').select(['subject', 'rows']).where('check_name', '=', 'host_gone').orderBy('id').execute();
    assert.deepEqual(events, [
      { subject: 'oldhost', rows: 0 },
      { subject: 'oldhost', rows: 2 },
      { subject: 'oldhost', rows: 1 },
    ]);
  });

  it('manager.hostGoneHours may be a fraction of an hour, as the config allows', async () => {
    await insertUrls(t.db, 'uk', 2);
    await sql`UPDATE live_images SET stage = 'push', store_host = CASE WHEN id % 2 = 0 THEN 'web1' ELSE 'web2' END`.execute(t.db);
    await relistAll(t.db);
    await workerOf(t, 'web1', '40 minutes');
    await workerOf(t, 'web2', '10 minutes');
    // Half an hour: web1 is gone, web2 not yet. (The hours went to make_interval as an integer: 0.5 was an SQL error.)
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 0.5, 'testhost'), [{ host: 'web1', rows: 1 }]);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 1, 'push/waiting': 1 });
  });

  it('a host gone longer than manager.keepStatsDays stays known: its rows reworked later are still sent back', async () => {
    await insertUrls(t.db, 'uk', 2);
    await liveOn(t, 'oldhost');
    await workerOf(t, 'oldhost', '20 days');
    await workerOf(t, 'oldhost', '30 days');
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [{ host: 'oldhost', rows: 0 }]);
    await pruneStats(t.db, 14);
    assert.equal(Number((await sql<{ n: string }>`SELECT count(*) AS n FROM workers`.execute(t.db)).rows[0].n), 1, "only the host's last worker is kept");
    assert.equal(await reworkRows(t.db, 'thumbnail', { country: 'uk' }), 2);
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [{ host: 'oldhost', rows: 2 }]);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 2 });
  });
});
