// Our own faults never cost a row: a full store pauses the stage, a frontend
// down holds only its own pushes. Real file systems (a tmpfs the test mounts),
// real daemons, real rsync.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { parseConfig } from '../src/config/load-config.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { runCheck } from '../src/manager/run-check.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { createPusher } from '../src/push/pusherd-main.ts';
import { countBy } from './helpers/rows.ts';
import { insertPushRows } from './helpers/push-fixtures.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { flatJpeg, insertThumbnailRows } from './helpers/thumbnail-fixtures.ts';
import { fillUp } from '../bench/lib/fill-up.ts';
import { DownloadWorker } from '../src/download/download-worker.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { insertUrls } from './helpers/rows.ts';
import { makeTestImages, startImageServer } from './helpers/image-server.ts';
import { runByHand } from './helpers/run-by-hand.ts';
import { readLog, waitForLogLine } from './helpers/log-files.ts';
import { within } from './helpers/within-deadline.ts';
import { createThumbnailWorker } from '../src/thumbnail/thumbnail-worker.ts';

async function chargedRows(t: TestDatabase): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE attempts > 0 OR state = 'failed'`.execute(t.db);
  return rows[0].n;
}

/**
 * A store_path_failed run by hand: the rows' stage, attempts and class are `expected` (in id order); the first row's
 * reason matches `reason` and it waits queue.oursRetrySeconds (not claimed again at once); nothing is paused.
 */
async function assertOneRowWaits(t: TestDatabase, expected: Array<[string, number, string | null]>, reason: RegExp): Promise<void> {
  const { rows: facts } = await sql<{ stage: string; attempts: number; last_error_class: string | null; last_error: string | null; wait: number }>`
    SELECT stage, attempts, last_error_class, last_error, extract(epoch FROM next_attempt_at - now())::float AS wait
    FROM live_images ORDER BY id`.execute(t.db);
  assert.deepEqual(
    facts.map((f) => [f.stage, f.attempts, f.last_error_class]),
    expected,
  );
  assert.match(facts[0].last_error!, reason);
  assert.ok(facts[0].wait > t.config.queue.oursRetrySeconds - 10, `waits queue.oursRetrySeconds, not claimed again at once (${facts[0].wait} s)`);
  const { paused_reason } = await t.db.selectFrom('workers').select('paused_reason').executeTakeFirstOrThrow();
  assert.equal(paused_reason, null, 'the store is fine: nothing paused');
}

describe('our own faults are never charged to a row', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
    await t.drop();
  });

  it('a thumbnail store on a full file system (tmpfs) pauses lis_thumbnaild, charges nothing, logs ENOSPC, and it resumes by itself when space returns', async () => {
    t = await createTestDatabase();
    const store = path.join(t.dir, 'thumbs-tmpfs');
    fs.mkdirSync(store);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', store]);
    cleanups.push(() => {
      execFileSync('umount', ['-l', store]);
    });
    const filler = path.join(store, 'filler');
    fillUp(filler);
    const colours = [
      [200, 40, 40],
      [40, 200, 40],
      [40, 40, 200],
      [200, 200, 40],
      [40, 200, 200],
      [200, 40, 200],
    ];
    await insertThumbnailRows(
      t.db,
      t.config,
      'uk',
      await Promise.all(colours.map(async ([r, g, b], i) => ({ url: `http://a.example/${i}.jpg`, original: await flatJpeg(320, 240, { r, g, b }) }))),
    );
    const config = t.writeConfig({
      stores: { thumbnails: store, minFreeBytes: 0, minFreePercent: 0, checkSeconds: 0.2, retryMaxSeconds: 0.5 },
      queue: { pollSeconds: 0.5, heartbeatSeconds: 0.5 },
    });
    const run: Spawned = spawnTs('bin/lis_thumbnaild', ['--country', 'uk', '--config', config, '--service']);
    cleanups.push(async () => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    const paused = async () => (await t.db.selectFrom('workers').select(['paused_reason', 'paused_since']).executeTakeFirst()) ?? null;
    await waitFor(async () => (await paused())?.paused_reason != null, 30_000, 'the worker paused');
    assert.match((await paused())!.paused_reason!, /^ENOSPC/);
    assert.ok((await paused())!.paused_since);
    const errorLog = path.join(t.config.log.dir, 'thumbnaild.uk.error.log');
    await waitFor(
      () => fs.existsSync(errorLog) && /ERROR .*Store not writable, pausing .*ENOSPC/.test(fs.readFileSync(errorLog, 'utf8')),
      10_000,
      'ENOSPC in the error log',
    );
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 6 }, 'nothing claimed while paused');
    assert.equal(await chargedRows(t), 0);

    fs.rmSync(filler);
    await waitFor(async () => (await countBy(t.db))['push/waiting'] === 6, 30_000, 'every row thumbnailed once space returned');
    assert.equal(await chargedRows(t), 0);
    assert.equal((await paused())!.paused_reason, null, 'the pause is over');
    await waitForLogLine(path.join(t.config.log.dir, 'thumbnaild.uk.log'), /Store writable again, resuming/);
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
  });

  it("a fault inside the thumbnail store (a file where a row's folder should be) is that row's, store_path_failed: uncharged, it waits queue.oursRetrySeconds, the stage goes on unpaused and a run by hand ends", async () => {
    t = await createTestDatabase();
    const rows = await insertThumbnailRows(
      t.db,
      t.config,
      'uk',
      await Promise.all([0, 1, 2].map(async (i) => ({ url: `http://a.example/${i}.jpg`, original: await flatJpeg(320, 240, { r: 200, g: 80 * i, b: 40 }) }))),
    );
    // The bad row's folder <store>/uk/<aa>/<bb> is a file: its writes fail ENOTDIR, while the store's own check
    // (statfs, a probe at its top) passes. Given back as store_write_failed, the row was claimed again at once.
    const hash = rows[0].image_hash;
    const folder = path.join(t.config.stores.thumbnails, 'uk', hash.slice(0, 2), hash.slice(2, 4));
    fs.mkdirSync(path.dirname(folder), { recursive: true });
    fs.writeFileSync(folder, 'not a folder');
    const log = createLogger({ component: 'thumbnaild', log: t.config.log, screen: false, country: 'uk' });
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const run = runByHand(createThumbnailWorker({ config: t.config, db: t.db }), t, log, { signal: stop.signal });
    const totals = await within(run, 'end of the run by hand', 20_000);
    assert.deepEqual([totals.done, totals.deferred], [2, 1], 'each row worked once');
    await assertOneRowWaits(
      t,
      [
        ['thumbnail', 0, 'store_path_failed'],
        ['push', 0, null],
        ['push', 0, null],
      ],
      /ENOTDIR.*the store itself can be written/,
    );
  });

  it("a fault inside the originals store (a file where a row's folder should be) is that row's, store_path_failed: its source is not asked, it waits queue.oursRetrySeconds, the rest go on and a run by hand ends", async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    const images = await startImageServer(await makeTestImages());
    cleanups.push(() => images.close());
    await t.db
      .insertInto('live_images')
      .values(
        [images.url('/same.jpg'), images.url('/good.jpg?1'), images.url('/good.jpg?2')].map((image_url) => ({ country: 'uk', datasource_id: 1, image_url })),
      )
      .execute();
    const { image_hash: hash } = await t.db.selectFrom('live_images').select('image_hash').where('image_url', 'like', '%/same.jpg').executeTakeFirstOrThrow();
    // <originals>/uk/<aa>/<bb> is a file: the original's folder cannot be made (EEXIST), while the store's own
    // check passes. As store_write_failed the stage paused, resumed at once and fetched the URL again and again.
    const folder = path.join(t.config.stores.originals, 'uk', hash.slice(0, 2), hash.slice(2, 4));
    fs.mkdirSync(path.dirname(folder), { recursive: true });
    fs.writeFileSync(folder, 'not a folder');
    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false, country: 'uk' });
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const worker = new DownloadWorker(t.config, t.db, 'uk');
    cleanups.push(() => worker.close());
    const totals = await within(runByHand(worker, t, log, { signal: stop.signal }), 'end of the run by hand', 20_000);
    assert.deepEqual([totals.done, totals.deferred], [2, 1], 'each row worked once');
    await assertOneRowWaits(
      t,
      [
        ['download', 0, 'store_path_failed'],
        ['thumbnail', 0, null],
        ['thumbnail', 0, null],
      ],
      /EEXIST.*the store itself can be written/,
    );
    assert.equal(images.hits.get('/same.jpg') ?? 0, 0, 'a store that cannot take the original costs its source no request');
  });

  it('an originals store that fills up mid-chunk: lis_downloadd records store_write_failed (not internal), fetches no more of the chunk, pauses, charges nothing, and resumes when space returns', async () => {
    const store = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-originals-tmpfs-'));
    // Room for a few dozen originals (a tmpfs page each): full well before the chunk's 400 rows are done.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', store]);
    cleanups.push(() => {
      execFileSync('umount', ['-l', store]);
      fs.rmSync(store, { recursive: true, force: true });
    });
    t = await createTestDatabase({
      overrides: {
        download: { ...TEST_DOWNLOAD, concurrency: 8, perHostConcurrency: 8 },
        stores: { originals: store, minFreeBytes: 0, minFreePercent: 0, checkSeconds: 0.2, retryMaxSeconds: 0.5 },
      },
    });
    const { config } = t;
    const images = await startImageServer(await makeTestImages());
    cleanups.push(() => images.close());
    await insertUrls(t.db, 'uk', 400, { prefix: `${images.url('/good.jpg')}?` });
    const log = createLogger({ component: 'downloadd', log: config.log, screen: false, country: 'uk' });
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const worker = new DownloadWorker(config, t.db, 'uk');
    const run = runByHand(worker, { ...t, config }, log, { chunkSize: 500, signal: stop.signal });
    cleanups.push(async () => {
      stop.abort();
      await run.catch(() => {});
    });
    const paused = async () => (await t.db.selectFrom('workers').select('paused_reason').executeTakeFirst())?.paused_reason ?? null;
    await waitFor(async () => (await paused()) !== null, 30_000, 'the worker paused');
    assert.match((await paused())!, /^ENOSPC/);
    const locked = async () => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE locked_by IS NOT NULL`.execute(t.db)).rows[0].n);
    await waitFor(async () => (await locked()) === 0, 30_000, 'the chunk given back');
    assert.equal(await chargedRows(t), 0);
    const { rows: failed } = await sql<{ last_error_class: string; n: number }>`
      SELECT last_error_class, count(*)::int AS n FROM live_images WHERE last_error_class IS NOT NULL GROUP BY 1`.execute(t.db);
    assert.deepEqual(
      failed.map((r) => r.last_error_class),
      ['store_write_failed'],
    );
    // The operator reads why the rest of the chunk was not started: not a stop of the daemon.
    const logFile = path.join(config.log.dir, 'downloadd.uk.log');
    const said = /Not starting \d+ downloads of this chunk: the originals store cannot be written \(store_write_failed\); given back uncharged/;
    await waitForLogLine(logFile, said, 10_000); // why the chunk stopped
    assert.doesNotMatch(readLog(logFile), /Stopping: \d+ downloads not started/);
    const stored = (await countBy(t.db))['thumbnail/waiting'] ?? 0;
    // Once the store failed, no more of the chunk was fetched: only what was in flight went to the source in vain.
    const fetched = images.hits.get('/good.jpg') ?? 0;
    assert.ok(fetched - stored <= 2 * 8, `${fetched} fetched for ${stored} stored`);

    execFileSync('mount', ['-o', 'remount,size=16m', store]);
    await run;
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 400 });
    assert.equal(await chargedRows(t), 0);
    assert.equal(await paused(), null);
    worker.close();
  });

  it('a frontend down for hours (many retry rounds) holds only its own pushes: no row charged, every datasource enabled, down_since recorded and cleared', async () => {
    t = await createTestDatabase();
    const daemons = await Promise.all(['n1', 'n2'].map((n) => RsyncDaemon.start(path.join(t.dir, `rsyncd-${n}`))));
    cleanups.push(() => Promise.all(daemons.map((d) => d.stop())).then(() => {}));
    await addFrontend(t.db, 'n1', daemons[0].url('t'));
    await addFrontend(t.db, 'n2', daemons[1].url('t'));
    // Three datasources, all of whose rows wait for n2.
    for (const ds of [21, 22, 23]) {
      await insertPushRows(t.db, t.config, 'uk', 10, { prefix: `http://ds${ds}.example/` });
      await sql`UPDATE live_images SET datasource_id = ${ds} WHERE image_url LIKE ${`http://ds${ds}.example/%`}`.execute(t.db);
    }
    await daemons[1].stop();
    // "Six hours" in a few seconds: the window, minimum and retry time all shortened, many rounds run.
    const config = parseConfig(
      {
        ...JSON.parse(fs.readFileSync(t.writeConfig(), 'utf8')),
        queue: { oursRetrySeconds: 0.01, pollSeconds: 0.05 },
        manager: { badDatasource: { windowHours: 6, minAttempts: 5, failureRate: 0.5 } },
      },
      {},
      t.dir,
    );
    const log = createLogger({ component: 'pusherd', log: config.log, screen: false, files: false });
    cleanups.push(() => closeLogger(log));
    for (let round = 0; round < 6; round++) {
      const pusher = await createPusher({ config, db: t.db, log, country: 'uk', chunkSize: 30, service: false, signal: new AbortController().signal });
      await runByHand(pusher, { ...t, config }, log, { chunkSize: 30 });
      await sql`UPDATE live_images SET next_attempt_at = now()`.execute(t.db);
      await runCheck('bad_datasources', { config, db: t.db, log, country: 'uk' });
    }
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 30 }, 'not live while n2 lacks them');
    assert.equal(await chargedRows(t), 0, 'no row charged for the frontend');
    const rows = await t.db.selectFrom('live_images').select(['last_error_class']).distinct().execute();
    assert.deepEqual(
      rows.map((r) => r.last_error_class),
      ['frontend_down'],
    );
    const disabled = await sql<{ n: number }>`SELECT count(*)::int AS n FROM datasources WHERE NOT enabled`.execute(t.db);
    assert.equal(disabled.rows[0].n, 0, 'no datasource disabled');
    const n2 = await t.db.selectFrom('frontends').select(['down_since', 'down_reason']).where('name', '=', 'n2').executeTakeFirstOrThrow();
    assert.ok(n2.down_since, 'down_since recorded');
    assert.match(n2.down_reason!, /^frontend_down: /);

    await daemons[1].start();
    const pusher = await createPusher({ config, db: t.db, log, country: 'uk', chunkSize: 30, service: false, signal: new AbortController().signal });
    await runByHand(pusher, { ...t, config }, log, { chunkSize: 30 });
    assert.deepEqual(await countBy(t.db), { 'live/done': 30 });
    assert.equal(
      (await t.db.selectFrom('frontends').select('down_since').where('name', '=', 'n2').executeTakeFirstOrThrow()).down_since,
      null,
      'cleared when it answers',
    );
  });
});
