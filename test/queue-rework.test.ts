// A live image stays live while it is reworked, and new images go before a rework backlog.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { parseConfig } from '../src/config/load-config.ts';
import { ImageSys } from '../src/interface/image-sys.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { addFrontend, removeFrontend } from '../src/push/frontend-registry.ts';
import { createPusher } from '../src/push/pusherd-main.ts';
import { ClaimCursor } from '../src/queue/claim-cursor.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { finishRows } from '../src/queue/finish-rows.ts';
import { disableDatasource, enableDatasource } from '../src/manager/datasource-switch.ts';
import { refreshHeldByDisabled, refreshRows } from '../src/queue/refresh-rows.ts';
import { sendBackRows } from '../src/queue/send-back-rows.ts';
import { reworkRows } from '../src/queue/rework-rows.ts';
import type { ImageData } from '../src/store/image-data.ts';
import { nextThumbnailVersion, thumbnailRelativePath, thumbnailStorePath } from '../src/store/store-layout.ts';
import { insertPushRows, jpegBytes } from './helpers/push-fixtures.ts';
import { countBy, insertUrls, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { runByHand } from './helpers/run-by-hand.ts';

describe('rework of live images', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it("a refresh leaves a disabled datasource's live images as they are (its source is not to be asked), and takes them once it is enabled", async () => {
    await insertUrls(t.db, 'uk', 2, { datasourceId: 1, prefix: 'http://one.example/' });
    await insertUrls(t.db, 'uk', 2, { datasourceId: 2, prefix: 'http://two.example/' });
    await sql`UPDATE live_images SET stage = 'live', state = 'done', image_data = '{"presets":{}}', live_data = '{"presets":{}}'`.execute(t.db);
    await relistAll(t.db);
    await disableDatasource(t.db, 'uk', 2, 'by hand: the source asked us to stop');
    assert.equal(await refreshRows(t.db, { country: 'uk', olderThanDays: 0 }), 2);
    assert.equal(await refreshHeldByDisabled(t.db, { country: 'uk', olderThanDays: 0 }), 2);
    assert.deepEqual(await countBy(t.db, sql`datasource_id = 2`), { 'live/done': 2 }, 'not queued for lis_downloadd');
    assert.equal(await enableDatasource(t.db, 'uk', 2), 0);
    assert.equal(await refreshRows(t.db, { country: 'uk', olderThanDays: 0 }), 2);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 4 });
  });

  it('rows of a disabled datasource sent back to download (their original lost, their host gone) are parked there, not downloaded from its source', async () => {
    await insertUrls(t.db, 'uk', 2, { datasourceId: 2 });
    await sql`UPDATE live_images SET stage = 'thumbnail', state = 'failed', last_error_class = 'original_missing'`.execute(t.db);
    await disableDatasource(t.db, 'uk', 2, 'by hand: the source asked us to stop');
    const where = sql`li.stage = 'thumbnail' AND li.state = 'failed' AND li.locked_by IS NULL`;
    assert.equal(await sendBackRows(t.db, { where, to: 'download', reason: sql`li.last_error`, errorClass: sql`li.last_error_class` }), 2);
    assert.deepEqual(await countBy(t.db), { 'download/parked': 2 });
    assert.equal(await enableDatasource(t.db, 'uk', 2), 2, 'its re-opening puts them back');
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 2 });
  });

  async function runPusher(): Promise<void> {
    const config = parseConfig({ ...JSON.parse(fs.readFileSync(t.writeConfig(), 'utf8')), queue: { backoff: { baseSeconds: 0.01, jitter: 0 } } }, {}, t.dir);
    const log = createLogger({ component: 'pusherd', log: config.log, screen: false, country: 'uk' });
    const controller = new AbortController();
    try {
      const worker = await createPusher({ config, db: t.db, log, country: 'uk', chunkSize: 40, service: false, signal: controller.signal });
      await runByHand(worker, { ...t, config }, log, { chunkSize: 40, signal: controller.signal, workerId: 'test:1' });
    } finally {
      await closeLogger(log);
    }
  }

  /** What lis_thumbnaild does to a claimed row, with new pictures: version-named files in the store, then finish. */
  async function thumbnailAgain(seed: number): Promise<number> {
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'thumbnail', workerId: 'thumb', storeHost: t.config.host, limit: 100, afterId: '0' });
    const finished = [];
    for (const row of rows) {
      const old = row.image_data as unknown as ImageData;
      const version = nextThumbnailVersion(old);
      const presets: ImageData['presets'] = {};
      for (const [preset, file] of Object.entries(old.presets)) {
        const rel = thumbnailRelativePath('uk', row.image_hash, preset, 'jpg', version);
        const bytes = await jpegBytes(file.width, seed++);
        fs.mkdirSync(path.dirname(thumbnailStorePath(t.config, rel)), { recursive: true });
        fs.writeFileSync(thumbnailStorePath(t.config, rel), bytes);
        presets[preset] = { ...file, bytes: bytes.length, path: rel };
      }
      finished.push({ id: row.id, set: { image_data: { ...old, presets, version } as unknown as Record<string, unknown> } });
    }
    return finishRows(t.db, 'thumb', 'thumbnail', finished);
  }

  const snapshot = (root: string) =>
    Object.fromEntries(
      (fs.readdirSync(root, { recursive: true }) as string[])
        .filter((f) => fs.statSync(path.join(root, f)).isFile())
        .map((f) => [f, fs.readFileSync(path.join(root, f)).toString('base64')]),
    );

  it('a re-thumbnailed live image keeps answering with its old data until the new is on every enabled frontend; a 304 refresh touches nothing', async () => {
    const roots = { a: path.join(t.dir, 'frontend-a'), b: path.join(t.dir, 'frontend-b') };
    await addFrontend(t.db, 'a', roots.a);
    await addFrontend(t.db, 'b', roots.b);
    await insertPushRows(t.db, t.config, 'uk', 3);
    await runPusher();
    assert.deepEqual(await countBy(t.db), { 'live/done': 3 });
    const hashes = (await t.db.selectFrom('live_images').select('image_hash').orderBy('id').execute()).map((r) => r.image_hash);
    const images = await ImageSys.open({ config: t.config });
    try {
      const answer = async () => [...(await images.getSearchApiDataForHashes(hashes, { country: 'uk' })).values()];
      const v1 = await answer();
      assert.ok(v1.every((d) => d !== null));
      const v1Files = snapshot(roots.a);

      // lis rethumbnail: the rows leave `live` as work, not as served images.
      assert.equal(await reworkRows(t.db, 'thumbnail', { country: 'uk' }), 3);
      assert.deepEqual(await answer(), v1, 'still answered with the old data while waiting for the thumbnailer');
      assert.equal(await thumbnailAgain(1000), 3);
      assert.deepEqual(await answer(), v1, 'and while waiting for the pusher');

      // One enabled frontend cannot take the new files: the old version stays served everywhere.
      await addFrontend(t.db, 'down', 'rsync://127.0.0.1:9/nothing/');
      await runPusher();
      assert.deepEqual(await countBy(t.db), { 'push/waiting': 3 });
      assert.deepEqual(await answer(), v1, 'not on every frontend yet: the old data');
      const onA = snapshot(roots.a);
      for (const [f, bytes] of Object.entries(v1Files)) assert.equal(onA[f], bytes, `${f}: the served file is untouched on a`);
      assert.ok(
        Object.keys(onA).some((f) => f.includes('.v2.')),
        'the new version sits beside it, under its own names',
      );

      // The frontend goes away: on every enabled frontend now, the new version is served.
      await removeFrontend(t.db, 'down');
      await runPusher();
      assert.deepEqual(await countBy(t.db), { 'live/done': 3 });
      const v2 = await answer();
      assert.ok(
        v2.every((d, i) => d !== null && JSON.stringify(d) !== JSON.stringify(v1[i])),
        'the new data once it is everywhere',
      );
      assert.ok(JSON.stringify(v2).includes('.v2.jpg'));

      // An unchanged refresh (304): back to live with the same data, no push, no file touched.
      const before = await sql`SELECT id, image_data, live_data FROM live_images ORDER BY id`.execute(t.db);
      const pushesBefore = await sql`SELECT * FROM frontend_pushes ORDER BY frontend, image_hash`.execute(t.db);
      const filesBefore = { a: snapshot(roots.a), b: snapshot(roots.b) };
      assert.equal(await refreshRows(t.db, { country: 'uk', olderThanDays: 0 }), 3);
      assert.deepEqual(await answer(), v2, 'a refresh keeps the image live');
      const downloads = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'dl', storeHost: '', limit: 10, afterId: '0' });
      assert.equal(downloads.length, 3);
      // As lis_downloadd finishes a 304 (rowResult: not_modified).
      await finishRows(
        t.db,
        'dl',
        'download',
        downloads.map((r) => ({
          id: r.id,
          toStage: 'live' as const,
          set: { store_host: t.config.host, downloaded_at: new Date().toISOString(), etag: '"x"', last_modified: null },
        })),
      );
      assert.deepEqual((await sql`SELECT id, image_data, live_data FROM live_images ORDER BY id`.execute(t.db)).rows, before.rows);
      assert.deepEqual((await sql`SELECT * FROM frontend_pushes ORDER BY frontend, image_hash`.execute(t.db)).rows, pushesBefore.rows);
      await runPusher();
      assert.deepEqual({ a: snapshot(roots.a), b: snapshot(roots.b) }, filesBefore);
      assert.deepEqual(await answer(), v2);
    } finally {
      await images.close();
    }
  });

  it('file names: the first version keeps <hash>_<preset>.<ext>, later ones carry their version', () => {
    const hash = 'a30ff540a1a736f738146ac899d94375';
    assert.equal(thumbnailRelativePath('uk', hash, 'small', 'jpg'), `uk/a3/0f/${hash}_small.jpg`);
    assert.equal(thumbnailRelativePath('uk', hash, 'small', 'webp', 2), `uk/a3/0f/${hash}_small.v2.webp`);
    assert.equal(nextThumbnailVersion(null), 1, 'never thumbnailed');
    assert.equal(nextThumbnailVersion({ presets: {} }), 2, 'thumbnailed before the versions: that was 1');
    assert.equal(nextThumbnailVersion({ presets: {}, version: 2 }), 3);
  });

  it('new rows overtake a rework backlog of a whole country within one chunk', async () => {
    await insertUrls(t.db, 'uk', 3000);
    // Set-up by hand: the whole country live.
    await sql`UPDATE live_images SET stage = 'live', state = 'done', image_data = '{"presets":{}}', live_data = '{"presets":{}}', downloaded_at = now() - interval '90 days'`.execute(
      t.db,
    );
    await relistAll(t.db);
    assert.equal(await refreshRows(t.db, { country: 'uk', olderThanDays: 30 }), 3000);
    const cursor = new ClaimCursor(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '' });
    const first = await cursor.next(100);
    assert.ok(first.length === 100 && first.every((r) => r.priority === 1), 'a chunk of reworks while nothing new waits');
    await insertUrls(t.db, 'uk', 30, { prefix: 'http://new.example.com/' });
    const next = await cursor.next(100);
    assert.equal(next.filter((r) => r.priority === 0).length, 30, 'the very next chunk holds every new row');
    assert.deepEqual(
      next.slice(0, 30).map((r) => r.image_url.startsWith('http://new.example.com/')),
      Array(30).fill(true),
      'first',
    );
    assert.ok(
      next.slice(30).every((r) => r.priority === 1),
      'and the rest of the chunk goes on with the backlog',
    );
  });
});
