// A store that is not there (not mounted), or a file in it that cannot be read, is our fault: lis_thumbnaild
// and lis_pusherd pause (or give the row back) instead of sending rows a stage back for files never lost.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { STORE_MARKER } from '../src/daemon/store-check.ts';
import { originalPath } from '../src/store/store-layout.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { insertPushRows } from './helpers/push-fixtures.ts';
import { countBy } from './helpers/rows.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { flatJpeg, insertThumbnailRows, runThumbnailStage } from './helpers/thumbnail-fixtures.ts';
import { waitForLogLine } from './helpers/log-files.ts';
import { DownloadWorker } from '../src/download/download-worker.ts';
import type { ChunkContext, StageWorker } from '../src/daemon/run-daemon.ts';
import type { ClaimedRow } from '../src/queue/claim-chunk.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { runCheck } from '../src/manager/run-check.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { makeTestImages, startImageServer } from './helpers/image-server.ts';
import { runByHand } from './helpers/run-by-hand.ts';
import { rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import type { ImageData } from '../src/store/image-data.ts';

/** Each row's class and attempts, by URL. */
async function rowFacts(t: TestDatabase): Promise<Record<string, { stage: string; state: string; attempts: number; cls: string | null }>> {
  const { rows } = await sql<{ image_url: string; stage: string; state: string; attempts: number; last_error_class: string | null }>`
    SELECT image_url, stage, state, attempts, last_error_class FROM live_images ORDER BY id`.execute(t.db);
  return Object.fromEntries(rows.map((r) => [r.image_url, { stage: r.stage, state: r.state, attempts: r.attempts, cls: r.last_error_class }]));
}

/** The worker's pause as recorded (null: not paused). */
const pausedReason = async (t: TestDatabase) => (await t.db.selectFrom('workers').select('paused_reason').executeTakeFirst())?.paused_reason ?? null;

/**
 * A store (the thumbnail store unless told) on a disk of its own: a folder bind-mounted on it, mounted now, unmounted
 * by the test's cleanups whatever happens.
 */
function mountedThumbnailStore(t: TestDatabase, cleanups: (() => void)[], store = t.config.stores.thumbnails) {
  const disk = path.join(t.dir, `${path.basename(store)}-disk`);
  fs.mkdirSync(disk);
  fs.mkdirSync(store, { recursive: true });
  const mounted = () => execFileSync('findmnt', ['-n', store], { encoding: 'utf8' }).trim() !== '';
  const mount = () => execFileSync('mount', ['--bind', disk, store]);
  const umount = () => execFileSync('umount', [store]);
  mount();
  cleanups.push(() => {
    try {
      if (mounted()) umount();
    } catch {
      // not mounted
    }
  });
  return { disk, store, mount, umount };
}

describe('the stores a stage reads: not there, or a file unreadable', function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
    await t.drop();
  });

  /** `bin` as a service with quick store checks, stopped by the cleanups; returns once its worker paused. */
  async function startPausing(bin: string): Promise<Spawned> {
    const config = t.writeConfig({
      stores: { minFreeBytes: 0, minFreePercent: 0, checkSeconds: 0.2, retryMaxSeconds: 0.5 },
      queue: { pollSeconds: 0.5, heartbeatSeconds: 0.5 },
    });
    const run = spawnTs(bin, ['--country', 'uk', '--config', config, '--service']);
    cleanups.push(async () => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    await waitFor(async () => (await pausedReason(t)) !== null, 30_000, `${bin} paused`);
    return run;
  }

  /** The paused stage's chunk given back (its rows are locked until then, a moment after the pause is recorded). */
  const chunkGivenBack = () =>
    waitFor(async () => !Object.keys(await countBy(t.db)).some((k) => k.endsWith('/locked')), 10_000, 'the chunk in hand given back');

  it('with no folder for the country (not mounted) pauses the stage, sends nothing back to download, and resumes when it is back', async () => {
    t = await createTestDatabase();
    const specs = await Promise.all(
      [0, 1, 2, 3].map(async (i) => ({ url: `http://a.example/${i}.jpg`, original: await flatJpeg(320, 240, { r: 60 * i, g: 90, b: 200 }) })),
    );
    await insertThumbnailRows(t.db, t.config, 'uk', specs);
    const country = path.join(t.config.stores.originals, 'uk');
    const away = `${country}.unmounted`;
    fs.renameSync(country, away);
    const run = await startPausing('bin/lis_thumbnaild');
    assert.match((await pausedReason(t))!, /^ENOENT: cannot read .*originals\/uk \(is the store mounted\?\)/);
    // And what to do when its files are really gone.
    assert.ok(
      (await pausedReason(t))!.endsWith(
        `If its files are really gone (a new, empty disk), make the folder: mkdir -p ${country}; the rows missing them are then made again, uncharged`,
      ),
    );
    const errorLog = path.join(t.config.log.dir, 'thumbnaild.uk.error.log');
    await waitFor(
      () => fs.existsSync(errorLog) && /ERROR .*Store not readable, pausing/.test(fs.readFileSync(errorLog, 'utf8')),
      10_000,
      'the pause in the error log',
    );
    await chunkGivenBack();
    const facts = Object.values(await rowFacts(t));
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 4 }, 'nothing moved while the store was away');
    assert.ok(
      facts.every((f) => f.attempts === 0 && f.cls !== 'original_missing'),
      `no row charged or marked original_missing: ${JSON.stringify(facts)}`,
    );

    fs.renameSync(away, country);
    await waitFor(async () => (await countBy(t.db))['push/waiting'] === 4, 30_000, 'every row thumbnailed once the store was back');
    assert.equal(await pausedReason(t), null, 'the pause is over');
    await waitForLogLine(path.join(t.config.log.dir, 'thumbnaild.uk.log'), /Store readable again, resuming/);
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
  });

  it('an original that is there but cannot be read is given back uncharged (store_read_failed), not sent to download; its chunk goes on', async () => {
    t = await createTestDatabase();
    const specs = await Promise.all(
      [0, 1, 2].map(async (i) => ({ url: `http://b.example/${i}.jpg`, original: await flatJpeg(320, 240, { r: 200, g: 60 * i, b: 90 }) })),
    );
    const [bad] = await insertThumbnailRows(t.db, t.config, 'uk', specs);
    // A read that fails with something other than "not there" (EISDIR here; EACCES or EIO on a real store).
    const file = originalPath(t.config, 'uk', bad.image_hash);
    fs.rmSync(file);
    fs.mkdirSync(file);
    await runThumbnailStage(t.db, t.config, t.url);
    const facts = await rowFacts(t);
    assert.deepEqual(facts[bad.url], { stage: 'thumbnail', state: 'waiting', attempts: 0, cls: 'store_read_failed' });
    assert.equal(facts['http://b.example/1.jpg'].stage, 'push');
    assert.equal(facts['http://b.example/2.jpg'].stage, 'push');
    const { paused_reason } = await t.db.selectFrom('workers').select('paused_reason').executeTakeFirstOrThrow();
    assert.equal(paused_reason, null, 'one unreadable file pauses nothing');
  });

  it('an original that is empty in the store is our damage: original_missing, uncharged, and the manager has it fetched again whole, never a 304 to live without thumbnails', async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    const images = await startImageServer(await makeTestImages());
    cleanups.push(() => images.close());
    // /etag.jpg answers a conditional request with 304: the download that holds the original asks so.
    const url = images.url('/etag.jpg');
    await t.db.insertInto('live_images').values({ country: 'uk', datasource_id: 1, image_url: url }).execute();
    const downloader = new DownloadWorker(t.config, t.db, 'uk');
    cleanups.push(() => downloader.close());
    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false, country: 'uk' });
    cleanups.push(() => closeLogger(log));
    await runByHand(downloader, t, log);
    const { image_hash } = await t.db.selectFrom('live_images').select('image_hash').executeTakeFirstOrThrow();
    // lis_downloadd refuses an empty body (not_image), so an empty original was cut short here (a crash, a copy).
    const original = originalPath(t.config, 'uk', image_hash);
    fs.writeFileSync(original, '');

    await runThumbnailStage(t.db, t.config, t.url);
    assert.deepEqual(Object.values(await rowFacts(t)), [{ stage: 'thumbnail', state: 'waiting', attempts: 0, cls: 'original_missing' }]);
    await runCheck('bad_retry_jobs', { config: t.config, db: t.db, log });
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 1 }, 'sent back to download');
    await runByHand(downloader, t, log);
    // Were the empty file still there, the download would hold it for the last original: a conditional request,
    // a 304, and the row live with no thumbnails at all.
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 1 }, 'fetched again, whole');
    assert.equal(fs.readFileSync(original).length, (await makeTestImages()).jpeg.length);
    await runThumbnailStage(t.db, t.config, t.url);
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 1 });
  });

  it("an original cut short in the store (not as downloaded: fewer bytes than lis_downloadd stored) is our damage, original_missing, uncharged and removed; one that came so is still the source's", async () => {
    t = await createTestDatabase();
    const whole = await flatJpeg(320, 240, { r: 30, g: 160, b: 90 });
    const cut = whole.subarray(0, Math.floor(whole.length / 2));
    const rows = await insertThumbnailRows(t.db, t.config, 'uk', [
      { url: 'http://f.example/damaged.jpg', original: whole },
      { url: 'http://f.example/sent-cut.jpg', original: cut },
      { url: 'http://f.example/fine.jpg', original: whole },
    ]);
    // What lis_downloadd recorded of each original it stored: its bytes and SHA-256.
    for (const row of rows) {
      const bytes = fs.readFileSync(originalPath(t.config, 'uk', row.image_hash));
      const contentHash = crypto.createHash('sha256').update(bytes).digest('hex');
      await t.db.updateTable('live_images').set({ original_bytes: bytes.length, content_hash: contentHash }).where('id', '=', row.id).execute();
    }
    // Then a crash, or a copy or restore cut short, leaves the first one half there.
    const damaged = originalPath(t.config, 'uk', rows[0].image_hash);
    fs.writeFileSync(damaged, cut);

    await runThumbnailStage(t.db, t.config, t.url);
    const facts = await rowFacts(t);
    // Before, corrupt_image: failed for good and charged to its datasource, for a file our store cut.
    assert.deepEqual(facts['http://f.example/damaged.jpg'], { stage: 'thumbnail', state: 'waiting', attempts: 0, cls: 'original_missing' });
    const { last_error } = await t.db.selectFrom('live_images').select('last_error').where('id', '=', rows[0].id).executeTakeFirstOrThrow();
    assert.match(last_error!, /the original in the store is \d+ bytes where \d+ were downloaded: damaged in the store, not sent so \(removed\)/);
    assert.equal(fs.existsSync(damaged), false, 'removed, so that the download fetches it whole (no conditional request)');
    assert.deepEqual(
      facts['http://f.example/sent-cut.jpg'],
      { stage: 'thumbnail', state: 'failed', attempts: 1, cls: 'corrupt_image' },
      'cut as it came: the source',
    );
    assert.equal(facts['http://f.example/fine.jpg'].stage, 'push');
  });

  it('a thumbnail store with no folder for the country pauses lis_pusherd: nothing sent back to thumbnail, and it resumes when it is back', async () => {
    t = await createTestDatabase();
    await addFrontend(t.db, 'n1', path.join(t.dir, 'n1'));
    await insertPushRows(t.db, t.config, 'uk', 3);
    const country = path.join(t.config.stores.thumbnails, 'uk');
    const away = `${country}.unmounted`;
    fs.renameSync(country, away);
    const run = await startPausing('bin/lis_pusherd');
    assert.match((await pausedReason(t))!, /^ENOENT: cannot read .*thumbnails\/uk \(is the store mounted\?\)/);
    assert.match((await pausedReason(t))!, /make the folder: mkdir -p .*thumbnails\/uk; /);
    await chunkGivenBack();
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 3 }, 'nothing sent back to thumbnail');
    const facts = Object.values(await rowFacts(t));
    assert.ok(
      facts.every((f) => f.attempts === 0 && f.cls !== 'thumbnail_missing'),
      `no row charged or marked thumbnail_missing: ${JSON.stringify(facts)}`,
    );

    fs.renameSync(away, country);
    await waitFor(async () => (await countBy(t.db))['live/done'] === 3, 30_000, 'every row live once the store was back');
    assert.equal(await pausedReason(t), null, 'the pause is over');
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
  });

  it("a thumbnail store whose disk is not mounted pauses lis_thumbnaild instead of filling the host's own disk, and it resumes when the disk is back", async () => {
    t = await createTestDatabase();
    // The store's disk: a folder bind-mounted on the configured store, as a separate disk would be.
    const { disk, store, mount, umount } = mountedThumbnailStore(t, cleanups);
    // Earlier work of this host: live rows whose thumbnails are on that disk (the marker a first check left).
    await insertPushRows(t.db, t.config, 'uk', 2, { stage: 'live' });
    fs.writeFileSync(path.join(store, STORE_MARKER), 'marked\n');
    umount();
    const specs = await Promise.all(
      [0, 1, 2].map(async (i) => ({ url: `http://c.example/${i}.jpg`, original: await flatJpeg(320, 240, { r: 90, g: 200, b: 60 * i }) })),
    );
    await insertThumbnailRows(t.db, t.config, 'uk', specs);
    const run = await startPausing('bin/lis_thumbnaild');
    assert.match((await pausedReason(t))!, /is empty and has no \.imagesys-store, but rows of this host have files there: is its disk mounted\?/);
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 3, 'live/done': 2 }, 'nothing thumbnailed onto the wrong disk');
    assert.deepEqual(fs.readdirSync(store), [], "nothing written on the host's own disk");

    mount();
    await waitFor(async () => (await countBy(t.db))['push/waiting'] === 3, 30_000, 'thumbnailed once the disk was back');
    assert.equal(await pausedReason(t), null, 'the pause is over');
    assert.ok(fs.readdirSync(path.join(disk, 'uk')).length > 0, 'the files are on the disk');
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
  });

  it("a thumbnail store whose disk goes away while lis_thumbnaild runs (after the check before the claim) is not written either: the chunk's rows wait uncharged, the stage pauses, and it resumes on the disk", async () => {
    t = await createTestDatabase({
      overrides: { queue: { chunkSize: 2 }, thumbnail: { imagesInFlight: 2 }, stores: { minFreeBytes: 0, minFreePercent: 0, retryMaxSeconds: 0.2 } },
    });
    const { disk, store, mount, umount } = mountedThumbnailStore(t, cleanups);
    const specs = await Promise.all(
      [0, 1, 2, 3].map(async (i) => ({ url: `http://e.example/${i}.jpg`, original: await flatJpeg(160, 120, { r: 40 * i, g: 90, b: 200 }) })),
    );
    await insertThumbnailRows(t.db, t.config, 'uk', specs);
    // The disk goes (an operator's umount, a mount unit stopped: the daemon holds no file open there between
    // writes) once the first chunk is done and the second claimed: its check before the claim passed.
    let chunks = 0;
    const run = runThumbnailStage(t.db, t.config, t.url, 'uk', (worker) => ({
      ...worker,
      processChunk: (rows, ctx) => {
        if (++chunks === 2) umount();
        return worker.processChunk(rows, ctx);
      },
    }));
    await waitFor(async () => (await pausedReason(t)) !== null, 20_000, 'lis_thumbnaild paused');
    assert.match((await pausedReason(t))!, /is empty and has no \.imagesys-store, but rows of this host have files there: is its disk mounted\?/);
    // Before, the write made the folders again on the host's own disk, the next check marked that as the store,
    // and the rows went on to push with their files on the wrong disk.
    assert.deepEqual(fs.readdirSync(store), [], "nothing written on the host's own disk");
    const waiting = Object.values(await rowFacts(t)).filter((r) => r.stage === 'thumbnail');
    assert.deepEqual(
      waiting.map((r) => [r.attempts, r.cls]),
      [
        [0, 'store_write_failed'],
        [0, 'store_write_failed'],
      ],
      'the second chunk given back, uncharged, as the store fault it is',
    );

    mount();
    await run;
    assert.equal(await pausedReason(t), null, 'the pause is over');
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 4 }, 'every row thumbnailed once the disk was back');
    const files = fs.readdirSync(path.join(disk, 'uk'), { recursive: true }).filter((f) => String(f).endsWith('.jpg'));
    assert.equal(files.length, 4 * 3, "every row's files on the disk");
  });

  it('an originals store whose disk goes away while lis_downloadd runs (after the check before the claim) is not written: the row waits uncharged, the stage pauses, and it resumes on the disk', async () => {
    t = await createTestDatabase({
      overrides: { download: TEST_DOWNLOAD, stores: { minFreeBytes: 0, minFreePercent: 0, retryMaxSeconds: 0.2 } },
    });
    const images = await startImageServer(await makeTestImages());
    cleanups.push(() => images.close());
    const { disk, store, mount, umount } = mountedThumbnailStore(t, cleanups, t.config.stores.originals);
    for (const file of ['/good.jpg', '/good.png'])
      await t.db
        .insertInto('live_images')
        .values({ country: 'uk', datasource_id: 1, image_url: images.url(file) })
        .execute();
    const downloader = new DownloadWorker(t.config, t.db, 'uk');
    cleanups.push(() => downloader.close());
    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false, country: 'uk' });
    cleanups.push(() => closeLogger(log));
    // The disk goes once the first row is stored and the second claimed: the check before that claim passed.
    let chunks = 0;
    const wrapped: StageWorker = Object.assign(Object.create(downloader) as DownloadWorker, {
      processChunk: async (rows: ClaimedRow[], ctx: ChunkContext) => {
        if (++chunks === 2) {
          // Once the first row's result is written (the runner writes results beside the next chunk's work).
          await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 1, 10_000, 'the first row stored');
          umount();
        }
        return downloader.processChunk(rows, ctx);
      },
    });
    const run = runByHand(wrapped, t, log, { chunkSize: 1 });
    await waitFor(async () => (await pausedReason(t)) !== null, 20_000, 'lis_downloadd paused');
    assert.match((await pausedReason(t))!, /is empty and has no \.imagesys-store, but rows of this host have files there: is its disk mounted\?/);
    // Before, the download made the row's folders again on the host's own disk and stored the original there.
    assert.deepEqual(fs.readdirSync(store), [], "nothing written on the host's own disk");
    const facts = Object.values(await rowFacts(t));
    assert.deepEqual(
      facts.filter((r) => r.stage === 'download').map((r) => [r.attempts, r.cls]),
      [[0, 'store_write_failed']],
      'the row given back, uncharged, as the store fault it is',
    );

    mount();
    await run;
    assert.equal(await pausedReason(t), null, 'the pause is over');
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 2 }, 'both downloaded once the disk was back');
    const files = fs.readdirSync(path.join(disk, 'uk'), { recursive: true }).filter((f) => !String(f).includes('.tmp-') && /[0-9a-f]{32}$/.test(String(f)));
    assert.equal(files.length, 2, 'both originals on the disk');
  });

  it("lis_imaged makes no thumbnail in a thumbnail store whose disk is not mounted: 503, our fault, nothing on the host's disk", async () => {
    t = await createTestDatabase();
    const [row] = await insertThumbnailRows(t.db, t.config, 'uk', [{ url: 'http://g.example/0.jpg', original: await flatJpeg(320, 240) }]);
    await runThumbnailStage(t.db, t.config, t.url);
    // The store's disk goes: its folder is left empty (the mount point), the files and the marker on the disk.
    const store = t.config.stores.thumbnails;
    fs.renameSync(store, path.join(t.dir, 'thumbs-disk'));
    fs.mkdirSync(store);
    const imaged = await startImagedInProcess(t.config, t.db, t.url);
    cleanups.push(() => imaged.close());
    const { image_data } = await t.db.selectFrom('live_images').select('image_data').where('id', '=', row.id).executeTakeFirstOrThrow();
    const small = (image_data as unknown as ImageData).presets.small.path;
    const answer = await rawGet(imaged.url, `/${small}`);
    // Before, 200: the file was made on the host's own disk, and lis_thumbnaild's next check took that folder,
    // no longer empty, for the store and marked it.
    assert.equal(answer.status, 503, answer.body.toString());
    assert.match(answer.body.toString(), /store_write_failed: .*is its disk mounted\?/);
    assert.deepEqual(fs.readdirSync(store), [], "nothing written on the host's own disk");
  });

  it("lis_imaged fetches no original into an originals store whose disk is not mounted (an origin key's, a lost one's): 503, our fault, uncharged, the source not asked, nothing on the host's disk", async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    const images = await startImageServer(await makeTestImages());
    cleanups.push(() => images.close());
    t.config.imaged.origins = { web: { country: 'uk', datasourceId: 1, sources: [{ type: 'http', baseUrl: images.url('/') }] } };
    // Earlier work of this host: a row past download, its original on the store's disk (marked at its first check).
    const [row] = await insertThumbnailRows(t.db, t.config, 'uk', [{ url: images.url('/good.png'), original: (await makeTestImages()).png }]);
    await runThumbnailStage(t.db, t.config, t.url);
    // The originals store's disk goes: its folder is left empty (the mount point), the files and the marker on the disk.
    const store = t.config.stores.originals;
    fs.renameSync(store, path.join(t.dir, 'originals-disk'));
    fs.mkdirSync(store);
    // The row's thumbnail lost too, so that lis_imaged makes it again from an original it must fetch again.
    const { image_data } = await t.db.selectFrom('live_images').select('image_data').where('id', '=', row.id).executeTakeFirstOrThrow();
    const small = (image_data as unknown as ImageData).presets.small.path;
    fs.rmSync(path.join(t.config.stores.thumbnails, small));
    const imaged = await startImagedInProcess(t.config, t.db, t.url);
    cleanups.push(() => imaged.close());

    // Before, 200 for both: the originals were stored on the host's own disk, and lis_downloadd's next check took
    // that folder, no longer empty, for the store and marked it.
    const origin = await rawGet(imaged.url, '/web/small/good.jpg');
    assert.equal(origin.status, 503, origin.body.toString());
    assert.match(origin.body.toString(), /store_write_failed: .*is its disk mounted\?.*our fault/);
    const lost = await rawGet(imaged.url, `/${small}`);
    assert.equal(lost.status, 503, lost.body.toString());
    assert.match(lost.body.toString(), /store_write_failed: .*is its disk mounted\?.*our fault/);
    assert.deepEqual(fs.readdirSync(store), [], "nothing written on the host's own disk");
    assert.equal(images.hits.get('/good.jpg') ?? 0, 0, 'the source not asked for what could not be kept');
    const facts = await rowFacts(t);
    assert.deepEqual(
      facts[images.url('/good.jpg')],
      { stage: 'download', state: 'waiting', attempts: 0, cls: 'store_write_failed' },
      'the origin row kept, uncharged',
    );
  });

  it('a new store, or one from before the marker, is marked at its first check', async () => {
    t = await createTestDatabase();
    await insertThumbnailRows(t.db, t.config, 'uk', [{ url: 'http://d.example/0.jpg', original: await flatJpeg(64, 48) }]);
    await runThumbnailStage(t.db, t.config, t.url);
    assert.ok(fs.existsSync(path.join(t.config.stores.thumbnails, STORE_MARKER)), 'the thumbnail store is marked');
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 1 });
  });
});
