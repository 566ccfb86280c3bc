import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { redownloadFromGoneHosts } from '../src/manager/stuck-jobs.ts';
import { pruneStats } from '../src/manager/run-check.ts';
import { reworkRows } from '../src/queue/rework-rows.ts';
import { countBy, insertUrls, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { insertLiveRow, pushedToFrontend, rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import { OriginServer, photoJpeg } from './helpers/imaged-fixtures.ts';
import { spawnTs } from './helpers/processes.ts';
import { registerWorker } from '../src/daemon/worker-registry.ts';
import { refuseHostNameClash } from '../src/daemon/host-name-clash.ts';
import { storeIdentities } from '../src/daemon/store-identity.ts';
import { insertPushRows } from './helpers/push-fixtures.ts';
import pg from 'pg';
import { holderName } from '../src/cron/cluster-lock.ts';

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

  it('a frontend marked down by a pushing host that is gone for good (only that host may clear its mark) is cleared, so frontend_down is not alerted for ever', async () => {
    await sql`INSERT INTO frontends (name, target, down_since, down_reason, down_host) VALUES
              ('n1', '/srv/n1', now() - interval '2 days', 'rsync_error: auth failed', 'oldhost'),
              ('n2', '/srv/n2', now() - interval '1 hour', 'frontend_down: refused', 'web2')`.execute(t.db);
    await workerOf(t, 'oldhost', '3 days');
    await workerOf(t, 'web2', '1 minute');
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [{ host: 'oldhost', rows: 0, frontends: ['n1'] }]);
    const marks = await t.db.selectFrom('frontends').select(['name', 'down_host']).orderBy('name').execute();
    assert.deepEqual(marks, [
      { name: 'n1', down_host: null },
      { name: 'n2', down_host: 'web2' },
    ]);
  });

  it('`lis host gone NAME` sends its rows back now, without waiting manager.hostGoneHours; refuses a live host and a name no worker had', async () => {
    await insertUrls(t.db, 'uk', 3);
    await sql`UPDATE live_images SET stage = 'push', store_host = CASE WHEN id % 3 = 0 THEN 'web2' ELSE 'oldhost' END`.execute(t.db);
    await relistAll(t.db);
    await workerOf(t, 'oldhost', '10 minutes');
    await registerWorker(t.db, { id: 'web2:1:00000001', component: 'pusherd', host: 'web2', pid: 1, country: 'uk' });
    const lis = (...args: string[]) => spawnTs('bin/lis', ['--config', t.writeConfig(), 'host', 'gone', ...args]);
    const [gone, alive, typo] = [lis('oldhost'), lis('web2'), lis('oldhots')];
    assert.equal((await gone.exited).code, 0, gone.output());
    assert.match(gone.output(), /^2 rows of oldhost sent back to download$/m);
    assert.equal((await alive.exited).code, 1, alive.output());
    assert.match(alive.output(), /host web2 is alive: its worker web2:1:00000001 beat \d+s ago\. Stop its daemons first/);
    assert.equal((await typo.exited).code, 1, typo.output());
    assert.match(typo.output(), /no worker ever ran on a host named "oldhots"; the hosts known: oldhost, web2/);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 2, 'push/waiting': 1 });
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

describe("many hosts on one database: lis_imaged asked for another host's row (live, or queued)", function () {
  this.timeout(30_000);
  let t: TestDatabase;
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await t?.drop();
  });

  it("serves a preset of a live row whose files are on another host without recording it there: that host's pusher would look for the file in its own store, never find it, and fail the push again and again", async () => {
    const original = await photoJpeg(900, 600);
    const origin = await OriginServer.start(new Map([['/photo.jpg', original]]));
    closers.push(() => origin.close());
    t = await createTestDatabase({
      overrides: {
        download: TEST_DOWNLOAD,
        thumbnail: { presets: { small: { width: 120, height: 90, mode: 'crop' }, medium: { width: 320, height: 240, mode: 'pad' } } },
      },
    });
    const imaged = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(imaged.close);
    // Made live on web2 (its original and its small thumbnail in web2's stores); medium added to the config since.
    const row = await insertLiveRow(t.db, t.config, origin.url('/photo.jpg'), null, ['small']);
    await sql`UPDATE live_images SET store_host = 'web2' WHERE id = ${row.id}`.execute(t.db);
    await pushedToFrontend(t.db, t.dir, row.hash);

    // nginx sent the miss to this host's lis_imaged: the visitor gets the picture all the same.
    const made = await rawGet(imaged.url, row.pathOf('medium'));
    assert.equal(made.status, 200, made.body.toString());
    assert.equal(made.headers['x-imaged'], 'made');
    // But the row is web2's: its image_data names files in web2's store only, and its push records stand.
    const after = await t.db.selectFrom('live_images').select(['image_data', 'live_data', 'store_host']).where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.deepEqual(Object.keys((after.image_data as { presets: object }).presets), ['small']);
    assert.deepEqual(Object.keys((after.live_data as { presets: object }).presets), ['small']);
    assert.equal(after.store_host, 'web2');
    const push = await t.db.selectFrom('frontend_pushes').select('pushed_at').where('image_hash', '=', row.hash).executeTakeFirstOrThrow();
    assert.notEqual(push.pushed_at, null, 'not marked for a backfill that web2 cannot do');
    // Asked again here: made again (nothing recorded), from the original this host fetched once.
    assert.equal((await rawGet(imaged.url, row.pathOf('medium'))).status, 200);
    assert.equal(origin.hits.get('/photo.jpg'), 1);
  });

  it('a row waiting in thumbnail for the host whose store holds its original is 503 naming that host, not "being worked by a daemon"', async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    const imaged = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(imaged.close);
    await insertUrls(t.db, 'uk', 1);
    await sql`UPDATE live_images SET stage = 'thumbnail', store_host = 'web2'`.execute(t.db);
    await relistAll(t.db);
    const { image_hash: hash } = await t.db.selectFrom('live_images').select('image_hash').executeTakeFirstOrThrow();
    const res = await rawGet(imaged.url, `/uk/${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}_small.jpg`);
    assert.equal(res.status, 503, res.body.toString());
    assert.match(res.body.toString(), /waits for its thumbnails on web2, whose store holds its original \(its lis_thumbnaild makes them\)/);
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 1 }, 'left to web2, uncharged');
  });
});

describe('many hosts on one database: two machines with one host name', function () {
  this.timeout(20_000);
  let t: TestDatabase;
  afterEach(async () => t?.drop());

  /** A machine's stores, each marked as a daemon marks it at its first check (the marker names the moment). */
  function machine(name: string, markedAt: string): { originals: string; thumbnails: string } {
    const stores = { originals: path.join(t.dir, name, 'originals'), thumbnails: path.join(t.dir, name, 'thumbnails') };
    for (const dir of Object.values(stores)) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(
        path.join(dir, '.imagesys-store'),
        `An ImageSys store, marked ${markedAt}. Its absence tells an unmounted disk from the store: do not remove.\n`,
      );
    }
    return stores;
  }

  it('a second machine started under a host name another machine runs as (its config copied) is refused at start, naming both; another process of the same machine is not', async () => {
    t = await createTestDatabase();
    // The first machine's daemon, registered as run-daemon registers it (its stores' identities from their markers).
    const first = machine('web1', '2026-11-01T10:00:00.000Z');
    const running = {
      id: 'web1:4242:9f2c01ab',
      component: 'thumbnaild',
      host: 'web1',
      pid: 4242,
      country: 'uk',
      stores: await storeIdentities({ stores: { ...t.config.stores, ...first } }),
    };
    await registerWorker(t.db, running);
    // The copy: the same "host", its own disks.
    const copy = spawnTs('test/fixtures/test-daemon.ts', [
      '--country',
      'uk',
      '--config',
      t.writeConfig({ host: 'web1', stores: machine('web1-copy', '2026-11-30T16:20:00.123Z') }),
    ]);
    assert.equal((await copy.exited).code, 1, copy.output());
    assert.match(
      copy.output(),
      /another machine already runs as host "web1": worker web1:4242:9f2c01ab \(thumbnaild uk, last heartbeat \d+s ago\) uses another originals store .* and thumbnails store/,
    );
    assert.match(copy.output(), /Give each machine its own name \("host" in the config, or LIS_HOST\)/);
    assert.deepEqual(await t.db.selectFrom('workers').select('id').execute(), [{ id: running.id }], 'the copy never registered');
    // Another process of the first machine: its stores, so their markers. And one started before its store was marked.
    const sameStores = await storeIdentities({ stores: { ...t.config.stores, ...first } });
    await refuseHostNameClash(t.db, { ...running, id: 'web1:77:00000001', stores: sameStores }, 60);
    await registerWorker(t.db, { ...running, id: 'web1:78:00000002', stores: { originals: null, thumbnails: null } });
    await refuseHostNameClash(t.db, { ...running, id: 'web1:79:00000003', stores: sameStores }, 60);
    // With stores.shared every host mounts the same stores: nothing to tell.
    assert.equal(await storeIdentities({ stores: { ...t.config.stores, shared: true } }), null);
  });

  it("lis_cron_frontend on a second machine under the name fails, touching nothing: not its stores (every row of the name would go back a stage), nor the other machine's run (its lock session taken for a dead run of this host and ended)", async () => {
    t = await createTestDatabase();
    const first = machine('web1', '2026-11-01T10:00:00.000Z');
    const firstConfig = { ...t.config, host: 'web1', stores: { ...t.config.stores, ...first } };
    await registerWorker(t.db, {
      id: 'web1:4242:9f2c01ab',
      component: 'pusherd',
      host: 'web1',
      pid: 4242,
      country: 'uk',
      stores: await storeIdentities(firstConfig),
    });
    // Thumbnailed on web1, waiting for its pusher: the files are on web1's disk.
    await insertPushRows(t.db, firstConfig, 'uk', 3);
    // web1's weekly run, under way: its lock session named for web1 and a pid that is not running on the copy.
    const running = new pg.Client({ connectionString: t.url, application_name: holderName('web1', 4_000_000) });
    running.on('error', () => {}); // ended by a takeover: the assertions below say so
    await running.connect();
    try {
      await running.query(`SELECT pg_advisory_lock(x'75706b70'::int, hashtext('uk'))`);
      const copy = spawnTs('bin/lis_cron_frontend', [
        '--all',
        '--country',
        'uk',
        '--config',
        t.writeConfig({ host: 'web1', stores: machine('web1-copy', '2026-11-30T16:20:00.123Z') }),
      ]);
      assert.equal((await copy.exited).code, 1, copy.output());
      assert.match(copy.output(), /UK: another machine already runs as host "web1": worker web1:4242:9f2c01ab \(pusherd uk/);
      assert.deepEqual((await running.query('SELECT 1 AS alive')).rows, [{ alive: 1 }], "web1's run keeps its session and its lock");
    } finally {
      await running.end();
    }
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 3 }, 'nothing sent back to thumbnail');
    const outcome = await t.db.selectFrom('manager_events').select(['subject', 'detail']).where('check_name', '=', 'upkeep').executeTakeFirstOrThrow();
    assert.equal(outcome.subject, 'web1');
    assert.match(outcome.detail, /^failed: another machine already runs as host "web1"/);
  });
});
