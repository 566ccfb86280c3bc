import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { sql } from 'kysely';
import { lis_hash_for_url } from '../src/hash/image-hash.ts';
import { lockImageRow } from '../src/imaged/image-row.ts';
import { closeServer } from '../src/imaged/imaged-server.ts';
import { enqueueRows } from '../src/queue/enqueue-rows.ts';
import { insertOriginRow } from '../src/queue/origin-rows.ts';
import { disableDatasource } from '../src/manager/datasource-switch.ts';
import { thumbnailRelativePath, thumbnailStorePath } from '../src/store/store-layout.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { insertLiveRow, insertQueuedRow, pushedToFrontend, rawExchange, rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import { OriginServer, photoJpeg, s3Credentials, startS3rver } from './helpers/imaged-fixtures.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { runDownloads } from './helpers/run-downloads.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';

const PRESETS = {
  small: { width: 120, height: 90, mode: 'crop' as const },
  medium: { width: 320, height: 240, mode: 'pad' as const },
  large: { width: 640, height: 480, mode: 'resize' as const },
};

describe('lis_imaged (in process, real HTTP, PostgreSQL, sharp, S3)', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let origin: OriginServer;
  let original: Buffer;
  const closers: Array<() => Promise<void> | void> = [];

  before(async () => {
    original = await photoJpeg(900, 600);
  });
  beforeEach(async () => {
    origin = await OriginServer.start(
      new Map([
        ['/photo.jpg', original],
        ['/slow.jpg', original],
        ['/other.jpg', original],
      ]),
    );
    closers.push(() => origin.close());
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await t?.drop();
  });

  /**
   * The image's advisory lock, held by a transaction of this test (as another process's generation holds it)
   * until the returned function is called (or the test ends); that resolves once the lock is free again.
   */
  async function holdImageLock(hash: string): Promise<() => Promise<void>> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = t.db.transaction().execute(async (trx) => {
      await lockImageRow(trx, 'uk', hash, { preset: 'small', version: 1 }, 1000);
      locked();
      await released;
    });
    closers.push(async () => {
      release();
      await holder;
    });
    await isLocked;
    return async () => {
      release();
      await holder;
    };
  }

  async function setup(imaged: LisConfigInput['imaged'] = {}, extra: LisConfigInput = {}) {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: PRESETS }, imaged, ...extra } });
    const server = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(server.close);
    return server;
  }

  it('makes a preset a live row lacks (a preset added to the config) from the stored original, with no daemon running; then serves it from the store with ETag, 304 and HEAD', async () => {
    const server = await setup();
    // The row went live when only `small` existed: medium and large were added to the config since.
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/a.jpg', original, ['small']);
    await pushedToFrontend(t.db, t.dir, row.hash);

    const made = await rawGet(server.url, row.pathOf('medium'));
    assert.equal(made.status, 200, made.body.toString());
    assert.equal(made.headers['content-type'], 'image/jpeg');
    assert.equal(made.headers['x-imaged'], 'made');
    assert.deepEqual(
      await sharp(made.body)
        .metadata()
        .then((m) => [m.format, m.width, m.height]),
      ['jpeg', 320, 240],
    );
    const stored = thumbnailStorePath(t.config, row.pathOf('medium').slice(1));
    assert.deepEqual(fs.readFileSync(stored), made.body);
    const after = await t.db.selectFrom('live_images').select(['image_data', 'live_data', 'stage']).where('id', '=', row.id).executeTakeFirstOrThrow();
    const presets = (after.image_data as { presets: Record<string, { path: string; width: number }> }).presets;
    assert.deepEqual(Object.keys(presets).sort(), ['medium', 'small']);
    assert.deepEqual(Object.keys((after.live_data as { presets: object }).presets).sort(), ['medium', 'small'], 'the Interface serves it at once');
    assert.equal(presets.medium.path, row.pathOf('medium').slice(1));
    assert.equal(after.stage, 'live');
    // Queued for pushing: the frontend's record no longer counts as pushed, so the pusher's backfill sends it.
    const push = await t.db.selectFrom('frontend_pushes').select('pushed_at').where('image_hash', '=', row.hash).executeTakeFirstOrThrow();
    assert.equal(push.pushed_at, null);

    const again = await rawGet(server.url, row.pathOf('medium'));
    assert.equal(again.status, 200);
    assert.equal(again.headers['x-imaged'], 'store');
    assert.deepEqual(again.body, made.body);
    assert.equal(again.headers.etag, made.headers.etag);
    assert.ok(again.headers['last-modified']);
    assert.equal(again.headers['cache-control'], 'public, max-age=86400');
    const cached = await rawGet(server.url, row.pathOf('medium'), { headers: { 'if-none-match': again.headers.etag } });
    assert.equal(cached.status, 304);
    assert.equal(cached.body.length, 0);
    const since = await rawGet(server.url, row.pathOf('medium'), { headers: { 'if-modified-since': again.headers['last-modified'] } });
    assert.equal(since.status, 304);
    const head = await rawGet(server.url, row.pathOf('medium'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers['content-length']), made.body.length);
    assert.equal(head.body.length, 0);
    // Twins are off: no WebP to give.
    assert.equal((await rawGet(server.url, row.pathOf('medium', 'webp'))).status, 404);
    assert.equal(server.service.generations, 1);
  });

  it('a datasource whose process details were written invalid into the table gets 503 saying so, not 500', async () => {
    const server = await setup();
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/g.jpg', original, ['small']);
    await sql`INSERT INTO datasources (country, datasource_id, gamma) VALUES ('uk', 1, 0) ON CONFLICT (country, datasource_id) DO UPDATE SET gamma = 0`.execute(
      t.db,
    );
    const answer = await rawGet(server.url, row.pathOf('medium'));
    assert.equal(answer.status, 503, answer.body.toString());
    assert.match(answer.body.toString(), /datasource 1 of uk: its process details are invalid \(gamma 0: expected a number from 0\.1 to 10\)/);
    assert.equal(server.service.generations, 1, 'tried once, nothing made');
  });

  it("serves a reworked row's versioned names (`<hash>_<preset>.v<N>.jpg`), and only versions the row has", async () => {
    const server = await setup();
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/v.jpg', original, []);
    const data = JSON.stringify({ original: { width: 900, height: 600, format: 'jpeg', bytes: 1 }, contentHash: 'x', presets: {}, version: 2 });
    await t.db.updateTable('live_images').set({ image_data: data, live_data: data }).where('id', '=', row.id).execute();
    const versioned = row.pathOf('small').replace('_small.jpg', '_small.v2.jpg');
    const made = await rawGet(server.url, versioned);
    assert.equal(made.status, 200, made.body.toString());
    assert.ok(fs.existsSync(thumbnailStorePath(t.config, versioned.slice(1))));
    const after = await t.db.selectFrom('live_images').select('live_data').where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.equal((after.live_data as { presets: Record<string, { path: string }> }).presets.small.path, versioned.slice(1));
    assert.equal((await rawGet(server.url, row.pathOf('small'))).status, 404, "version 1 is not this row's");
    assert.equal((await rawGet(server.url, versioned.replace('.v2.', '.v3.'))).status, 404);
  });

  it('a queued row whose download fails for now (refused connection; retried later) is 502 with the error, not 404; one that fails for good is 404', async () => {
    const server = await setup();
    const refused = await insertQueuedRow(t.db, 'http://127.0.0.1:1/refused.jpg');
    const res = await rawGet(server.url, refused.pathOf('small'));
    assert.equal(res.status, 502, res.body.toString());
    assert.match(res.body.toString(), /connection/);
    const after = await t.db.selectFrom('live_images').select(['stage', 'state']).where('id', '=', refused.id).executeTakeFirstOrThrow();
    assert.deepEqual([after.stage, after.state], ['download', 'waiting'], 'the daemons retry it');
    const missing = await insertQueuedRow(t.db, origin.url('/missing.jpg'));
    assert.equal((await rawGet(server.url, missing.pathOf('small'))).status, 404);
  });

  it('a queued row waiting for its retry time is 503 saying so, with a Retry-After until that time', async () => {
    const server = await setup({ retryAfterSeconds: 5 });
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    // As failRows leaves a row whose download failed for now: waiting, unlocked, its retry an hour away.
    const { rows } = await sql<{ at: Date }>`
      UPDATE live_images SET attempts = 1, last_error_class = 'timeout', next_attempt_at = now() + interval '1 hour'
       WHERE id = ${row.id} RETURNING next_attempt_at AS at`.execute(t.db);
    const res = await rawGet(server.url, row.pathOf('small'));
    assert.equal(res.status, 503, res.body.toString());
    assert.equal(res.body.toString(), `the image waits for its retry at ${rows[0].at.toISOString()} (last error: timeout)\n`);
    const after = Number(res.headers['retry-after']);
    assert.ok(after > 3500 && after <= 3600, `Retry-After ${after}`);
    assert.equal(origin.hits.size, 0, 'nothing fetched it');
  });

  it('a queued row asked for a version its thumbnailing does not make: 404 (as for a thumbnailed row), not 503', async () => {
    const server = await setup();
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    const v2 = row.pathOf('small').replace('_small.jpg', '_small.v2.jpg');
    const res = await rawGet(server.url, v2);
    assert.equal(res.status, 404, res.body.toString());
    // Its stages were worked all the same: the row is thumbnailed (version 1) and the retry gives the same answer.
    const after = await t.db.selectFrom('live_images').select(['stage', 'state']).where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.deepEqual([after.stage, after.state], ['push', 'waiting']);
    assert.equal((await rawGet(server.url, v2)).status, 404);
    assert.equal((await rawGet(server.url, row.pathOf('small'))).headers['x-imaged'], 'store');
  });

  it('serves WebP and AVIF twins by extension when they are switched on', async () => {
    const server = await setup({}, { thumbnail: { presets: PRESETS, twins: { webp: true, avif: true } } });
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/tw.jpg', original, []);
    const webp = await rawGet(server.url, row.pathOf('small', 'webp'));
    assert.equal(webp.status, 200, webp.body.toString());
    assert.equal(webp.headers['content-type'], 'image/webp');
    assert.equal((await sharp(webp.body).metadata()).format, 'webp');
    const avif = await rawGet(server.url, row.pathOf('small', 'avif'));
    assert.equal(avif.status, 200);
    assert.equal(avif.headers['content-type'], 'image/avif');
    assert.equal(avif.headers['x-imaged'], 'store');
    assert.equal(server.service.generations, 1);
  });

  it('a twin lost from the store (its JPEG still there) is made again, as a lost JPEG is; before, 404 for good', async () => {
    const server = await setup({}, { thumbnail: { presets: PRESETS, twins: { webp: true, avif: false } } });
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/tw.jpg', original, []);
    assert.equal((await rawGet(server.url, row.pathOf('small', 'webp'))).status, 200);
    const twin = thumbnailStorePath(t.config, row.pathOf('small', 'webp').slice(1));
    fs.rmSync(twin);
    const again = await rawGet(server.url, row.pathOf('small', 'webp'));
    assert.deepEqual([again.status, again.headers['content-type'], again.headers['x-imaged']], [200, 'image/webp', 'made'], again.body.toString());
    assert.deepEqual(fs.readFileSync(twin), again.body);
    assert.equal(server.service.generations, 2);
  });

  it('fetches the original again when a live row has lost it', async () => {
    const server = await setup();
    const row = await insertLiveRow(t.db, t.config, origin.url('/photo.jpg'), null, ['small']);
    const res = await rawGet(server.url, row.pathOf('large'));
    assert.equal(res.status, 200, res.body.toString());
    assert.deepEqual(
      await sharp(res.body)
        .metadata()
        .then((m) => [m.width, m.height]),
      [640, 427],
    );
    assert.equal(origin.hits.get('/photo.jpg'), 1);
  });

  it('works a queued row now: downloads and thumbnails it through the queue and leaves it for lis_pusherd; ten requests at once make it once', async () => {
    const server = await setup();
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    const answers = await Promise.all(Array.from({ length: 10 }, () => rawGet(server.url, row.pathOf('small'))));
    for (const a of answers) {
      assert.equal(a.status, 200, a.body.toString());
      assert.deepEqual(a.body, answers[0].body);
    }
    assert.equal(server.service.generations, 1);
    assert.equal(origin.hits.get('/photo.jpg'), 1);
    const after = await t.db.selectFrom('live_images').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.deepEqual([after.stage, after.state, after.locked_by], ['push', 'waiting', null]);
    assert.deepEqual(Object.keys((after.image_data as { presets: object }).presets).sort(), ['large', 'medium', 'small']);
    assert.ok(after.image_class);
    const listed = await t.db.selectFrom('claimable_rows').select('stage').where('id', '=', row.id).execute();
    assert.deepEqual(
      listed.map((r) => r.stage),
      ['push'],
    );
    const medium = await rawGet(server.url, row.pathOf('medium'));
    assert.equal(medium.headers['x-imaged'], 'store');
  });

  it('answers 404 with the configured placeholder for a picture it cannot give (no row, failed row, missing version), not for a twin switched off', async () => {
    const placeholder = await sharp({ create: { width: 10, height: 10, channels: 3, background: '#ccc' } })
      .png()
      .toBuffer();
    const file = path.join(fs.mkdtempSync('/tmp/lis-ph-'), 'ph.png');
    closers.push(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
    fs.writeFileSync(file, placeholder);
    const server = await setup({ placeholder: file });
    const hash = lis_hash_for_url('http://nowhere.invalid/x.jpg');
    const res = await rawGet(server.url, `/${thumbnailRelativePath('uk', hash, 'small', 'jpg')}`);
    assert.equal(res.status, 404);
    assert.equal(res.headers['content-type'], 'image/png');
    assert.deepEqual(res.body, placeholder);
    // Any picture it cannot give: a failed row, a version the row does not have.
    const failed = await insertQueuedRow(t.db, origin.url('/missing.jpg'));
    const live = await insertLiveRow(t.db, t.config, 'http://example.invalid/ph.jpg', original, ['small']);
    for (const p of [failed.pathOf('small'), live.pathOf('small').replace('_small.jpg', '_small.v2.jpg')]) {
      const r = await rawGet(server.url, p);
      assert.deepEqual([r.status, r.headers['content-type']], [404, 'image/png'], p);
    }
    // Not for a twin switched off: a format is missing, not the picture.
    const twin = await rawGet(server.url, live.pathOf('small', 'webp'));
    assert.equal(twin.status, 404);
    assert.match(twin.headers['content-type'] ?? '', /^text\/plain/);
    assert.match(twin.body.toString(), /twins are switched off/);
  });

  it('refuses dot segments, encoded slashes, bad hashes, unknown origins and sizes that are not a preset', async () => {
    const server = await setup({ origins: { web: { country: 'uk', sources: [{ type: 'http', baseUrl: origin.url('/') }] } } });
    const hash = lis_hash_for_url('x');
    const cases: Array<[string, number]> = [
      ['/uk/../../etc/passwd', 400],
      [`/uk/${hash.slice(0, 2)}/${hash.slice(2, 4)}/..%2f..%2fpasswd`, 400],
      ['/web/small/a%2Fb.jpg', 400],
      ['/web/small/../secret.jpg', 400],
      ['/uk/zz/zz/zzzz_small.jpg', 404],
      [`/uk/00/00/${hash}_small.jpg`, 404],
      [`/${thumbnailRelativePath('uk', hash, 'huge', 'jpg')}`, 404],
      ['/nosuch/small/a.jpg', 404],
      ['/web/999x999/photo.jpg', 400],
      ['/web/120/90/stretch/photo.jpg', 400],
      ['/web/121/90/crop/photo.jpg', 400],
      ['/web/123456/90/crop/a.jpg', 400],
      ['/web/999999x9/a.jpg', 400],
      ['/web/0120/090/crop/a.jpg', 400],
      ['/web/0120x90/a.jpg', 400],
    ];
    for (const [p, status] of cases) assert.equal((await rawGet(server.url, p)).status, status, p);
    assert.equal((await rawGet(server.url, '/web/small/photo.jpg', { method: 'POST' })).status, 405);
    assert.equal((await rawGet(server.url, '/web/small/photo.jpg', { method: 'DELETE' })).status, 405);
    // CONNECT too (node hands it to no request handler; before, the connection was dropped unanswered).
    const connect = await rawExchange(server.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.match(connect, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    assert.match(connect, /\r\nAllow: GET, HEAD\r\n/);
    const metrics = (await rawGet(server.url, '/metrics')).body.toString();
    assert.match(metrics, /^lis_imaged_requests_total\{[^}]*status="405"[^}]*\} 3$/m, '405 answers are counted');
    // The monitoring paths ignore a query, as the thumbnail paths do.
    const health = await rawGet(server.url, '/healthz?x');
    assert.deepEqual([health.status, health.body.toString()], [200, 'ok\n']);
    const scraped = await rawGet(server.url, '/metrics?name[]=lis_imaged_requests_total');
    assert.equal(scraped.status, 200);
    assert.match(scraped.body.toString(), /^lis_imaged_requests_total\{/m);
    assert.equal(origin.hits.size, 0, 'no refused request reached the origin');
  });

  it('HEAD and GET carry the same headers, text answers included (their length said); an HTTP/1.0 client keeps its connection after a refusal', async () => {
    const server = await setup();
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/a.jpg', original, ['small']);
    const nothing = `/${thumbnailRelativePath('uk', lis_hash_for_url('http://nowhere.invalid/x.jpg'), 'small', 'jpg')}`;
    const cases: Array<[string, number]> = [
      [row.pathOf('small'), 200],
      [row.pathOf('small', 'webp'), 404],
      [nothing, 404],
      ['/uk/../x', 400],
      ['/nosuch/small/a.jpg', 404],
      ['/healthz', 200],
    ];
    for (const [p, status] of cases) {
      const [get, head] = [await rawGet(server.url, p), await rawGet(server.url, p, { method: 'HEAD' })];
      const { date: _g, ...getHeaders } = get.headers;
      const { date: _h, ...headHeaders } = head.headers;
      assert.deepEqual([get.status, head.status], [status, status], p);
      assert.deepEqual(headHeaders, getHeaders, p);
      assert.equal(Number(get.headers['content-length']), get.body.length, p);
      assert.equal(head.body.length, 0, p);
    }
    // /metrics too (its figures, and so its length, change from one request to the next).
    const [metrics, metricsHead] = [await rawGet(server.url, '/metrics'), await rawGet(server.url, '/metrics', { method: 'HEAD' })];
    assert.equal(Number(metrics.headers['content-length']), metrics.body.length);
    assert.match(metricsHead.headers['content-length'] ?? '', /^\d+$/);
    assert.equal(metricsHead.headers['transfer-encoding'], undefined);
    // Two requests on one HTTP/1.0 connection, the first kept alive: both answered (before, the refusal closed it).
    const both = await rawExchange(server.url, `GET /uk/../x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n`);
    assert.deepEqual(both.match(/^HTTP\/1\.1 \d+/gm), ['HTTP/1.1 400', 'HTTP/1.1 200'], both);
  });

  it('an origin key the origin lacks leaves no row behind (one request or many at once); a passing failure, a row the ETL enqueued before or during the request, are kept', async () => {
    const server = await setup({
      origins: {
        web: { country: 'uk', datasourceId: 3, sources: [{ type: 'http', baseUrl: origin.url('/') }] },
        down: { country: 'uk', datasourceId: 3, sources: [{ type: 'http', baseUrl: 'http://127.0.0.1:1/' }] },
      },
    });
    const rowOf = (url: string) =>
      t.db.selectFrom('live_images').select(['stage', 'state', 'last_error_class']).where('image_url', '=', url).executeTakeFirst();
    const count = async () =>
      Number(
        (
          await t.db
            .selectFrom('live_images')
            .select((e) => e.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );

    const miss = await rawGet(server.url, '/web/small/random-1.jpg');
    assert.equal(miss.status, 404, miss.body.toString());
    assert.equal(origin.hits.get('/random-1.jpg'), 1);
    assert.equal(await count(), 0, 'the row the request made is gone again');

    // Many requests for one new key, two presets (two generations, one advisory lock): one row made, then none.
    const all = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        rawGet(server.url, i % 2 ? '/web/small/random-2.jpg' : '/web/120/90/crop/random-2.jpg').then((r) => r.status),
      ).concat(Array.from({ length: 4 }, () => rawGet(server.url, '/web/medium/random-2.jpg').then((r) => r.status))),
    );
    assert.deepEqual(new Set(all), new Set([404]));
    assert.equal(await count(), 0);

    // A passing failure (connection refused): the row stays, for the daemons to retry.
    const refused = await rawGet(server.url, '/down/small/a.jpg');
    assert.equal(refused.status, 502, refused.body.toString());
    assert.deepEqual(await rowOf('http://127.0.0.1:1/a.jpg'), { stage: 'download', state: 'waiting', last_error_class: 'connection' });

    // The ETL's row, there before the request: failed, and kept.
    await insertQueuedRow(t.db, origin.url('/etl.jpg'));
    assert.equal((await rawGet(server.url, '/web/small/etl.jpg')).status, 404);
    assert.deepEqual(await rowOf(origin.url('/etl.jpg')), { stage: 'download', state: 'failed', last_error_class: 'http_404' });

    // The ETL enqueues the URL while the request's download is under way: the row is the ETL's too, and kept.
    origin.held.add('/late.jpg');
    const arrived = origin.arrival('/late.jpg');
    const late = rawGet(server.url, '/web/small/late.jpg');
    await arrived;
    await enqueueRows(t.db, 'uk', [{ datasourceId: 3, url: origin.url('/late.jpg') }]);
    origin.release();
    assert.equal((await late).status, 404);
    assert.deepEqual(await rowOf(origin.url('/late.jpg')), { stage: 'download', state: 'failed', last_error_class: 'http_404' });
    assert.equal(await count(), 3);
  });

  it("a folder origin's key that names a folder, or goes below a file (`photo.jpg/x.jpg`), is a key the folder lacks: 404, no row left; before, 502 and a row kept for each", async () => {
    const uploads = fs.mkdtempSync('/tmp/lis-uploads-');
    closers.push(() => fs.rmSync(uploads, { recursive: true, force: true }));
    fs.mkdirSync(path.join(uploads, 'sub'));
    fs.writeFileSync(path.join(uploads, 'photo.jpg'), original);
    const server = await setup({ origins: { up: { country: 'uk', datasourceId: 3, sources: [{ type: 'folder', dir: uploads }] } } });
    for (const p of ['/up/small/sub', '/up/small/photo.jpg/x.jpg', '/up/120x90/photo.jpg/y.jpg']) {
      const answer = await rawGet(server.url, p);
      assert.equal(answer.status, 404, `${p}: ${answer.body.toString()}`);
    }
    assert.deepEqual(await t.db.selectFrom('live_images').select('image_url').execute(), [], 'no row left behind');
    assert.equal((await rawGet(server.url, '/up/small/photo.jpg')).status, 200, 'the file itself is served');
  });

  it("an origin key's row that lis_downloadd claimed first, and failed with 404 after the request gave up and lis_imaged stopped, is deleted by lis_managerd's missed_origin_rows; a key the origin has and the ETL's rows are kept", async () => {
    const server = await setup(
      { timeoutSeconds: 3, origins: { web: { country: 'uk', datasourceId: 3, sources: [{ type: 'http', baseUrl: origin.url('/') }] } } },
      // The daemon's download waits for the origin's answer longer than the request waits for the daemon.
      { download: { ...TEST_DOWNLOAD, timeouts: { connectSeconds: 2, firstByteSeconds: 30, totalSeconds: 30 } } },
    );
    const url = origin.url('/raced.jpg');
    const hash = lis_hash_for_url(url);
    const rows = () => t.db.selectFrom('live_images').select(['image_url', 'stage', 'state', 'last_error_class']).orderBy('image_url').execute();
    // The image's advisory lock, held by the test until the daemon has the row: lis_imaged inserts the row and then
    // waits for the lock, so the daemon claims the new row first (as a notified lis_downloadd can).
    const release = await holdImageLock(hash);
    origin.held.add('/raced.jpg');
    const arrived = origin.arrival('/raced.jpg');
    const request = rawGet(server.url, '/web/small/raced.jpg');
    await waitFor(async () => (await rows()).length === 1, 10_000, "lis_imaged's row");

    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false, files: false });
    closers.push(() => closeLogger(log));
    const daemon = runDownloads(t, log, 'test:raced');
    closers.push(async () => {
      origin.release();
      await daemon;
    });
    await arrived;
    await release();
    // The request waits for the daemon until its deadline, and gives up while the daemon still holds the row.
    const answer = await request;
    assert.equal(answer.status, 503, answer.body.toString());
    const held = await t.db.selectFrom('live_images').select(['state', 'locked_by']).executeTakeFirstOrThrow();
    assert.deepEqual(held, { state: 'waiting', locked_by: 'test:raced' });
    // Its generation, which goes on after the answer, gives up too (its own deadline); then lis_imaged stops.
    await waitFor(() => server.service.gate.stats.running === 0, 10_000, 'the generation to end');
    await server.close();
    assert.deepEqual(await t.db.selectFrom('live_images').select(['state', 'locked_by']).executeTakeFirstOrThrow(), held);
    // Now the origin answers 404 to the daemon, which fails the row; no lis_imaged is left to look at it.
    origin.release();
    await daemon;
    assert.equal(origin.hits.get('/raced.jpg'), 1, 'fetched once, by the daemon');
    assert.deepEqual(await rows(), [{ image_url: url, stage: 'download', state: 'failed', last_error_class: 'http_404' }]);

    // Beside it: the row of an origin key the origin has (made by a request, downloaded by a daemon), and the ETL's
    // row of a key the origin lacks, failed the same way (as before, a request never deletes it; nor does the check).
    await insertOriginRow(t.db, 'uk', 3, origin.url('/photo.jpg'));
    await enqueueRows(t.db, 'uk', [{ datasourceId: 3, url: origin.url('/etl-missing.jpg') }]);
    await runDownloads(t, log, 'test:later');
    const kept = [
      { image_url: origin.url('/etl-missing.jpg'), stage: 'download', state: 'failed', last_error_class: 'http_404' },
      { image_url: origin.url('/photo.jpg'), stage: 'thumbnail', state: 'waiting', last_error_class: null },
    ];
    assert.deepEqual(await rows(), [...kept, { image_url: url, stage: 'download', state: 'failed', last_error_class: 'http_404' }]);

    const check = spawnTs('bin/lis_managerd', ['--check', 'missed_origin_rows', '--config', t.writeConfig()]);
    assert.equal((await check.exited).code, 0, check.output());
    assert.match(check.output(), /missed_origin_rows: 1 rows of origin keys the origin lacks deleted/);
    assert.deepEqual(await rows(), kept);
    const events = await t.db.selectFrom('manager_events').select(['check_name', 'rows']).execute();
    assert.deepEqual(events, [{ check_name: 'missed_origin_rows', rows: 1 }]);
  });

  it("an origin key's row goes in through the queue's one insert: new, it is queued as enqueueRows queues a URL; known, it is left untouched", async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: PRESETS } } });
    await disableDatasource(t.db, 'uk', 4, 'test');
    const state = (url: string) =>
      t.db
        .selectFrom('live_images')
        .select(['id', 'datasource_id', 'stage', 'state', sql<boolean>`last_seen < now() - interval '1 day'`.as('old')])
        .where('image_url', '=', url)
        .executeTakeFirst();
    const listed = async (id: string) => (await t.db.selectFrom('claimable_rows').select('stage').where('id', '=', id).execute()).map((r) => r.stage);

    // New: its datasource row made first, the row queued in download and listed for the download daemons.
    const id = await insertOriginRow(t.db, 'uk', 3, 's3://photos/new.jpg');
    assert.ok(id);
    assert.deepEqual(await state('s3://photos/new.jpg'), { id, datasource_id: 3, stage: 'download', state: 'waiting', old: false });
    assert.deepEqual(await listed(id), ['download']);
    assert.ok(await t.db.selectFrom('datasources').select('enabled').where('datasource_id', '=', 3).executeTakeFirst());
    // Asked again: already there, so not this call's.
    assert.equal(await insertOriginRow(t.db, 'uk', 3, 's3://photos/new.jpg'), null);
    // A disabled datasource's new row is parked by the insert's trigger, and listed for nobody.
    const parked = await insertOriginRow(t.db, 'uk', 4, 's3://photos/parked.jpg');
    assert.deepEqual(await state('s3://photos/parked.jpg'), { id: parked, datasource_id: 4, stage: 'download', state: 'parked', old: false });
    assert.deepEqual(await listed(parked!), []);
    // The ETL's row, last seen two days ago: a request does not count as the ETL seeing it (the purge goes by that).
    await enqueueRows(t.db, 'uk', [{ datasourceId: 3, url: 's3://photos/etl.jpg' }]);
    await sql`UPDATE live_images SET last_seen = now() - interval '2 days' WHERE image_url = 's3://photos/etl.jpg'`.execute(t.db);
    const etl = await state('s3://photos/etl.jpg');
    assert.equal(await insertOriginRow(t.db, 'uk', 5, 's3://photos/etl.jpg'), null);
    assert.deepEqual(await state('s3://photos/etl.jpg'), etl);
    assert.equal(etl?.old, true);
  });

  it("makes nothing for a preset name that is a member of Object's prototype (`_constructor.jpg`)", async () => {
    const server = await setup();
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/proto.jpg', original, ['small']);
    const res = await rawGet(server.url, row.pathOf('constructor'));
    assert.equal(res.status, 404, res.body.toString());
    assert.equal(fs.existsSync(thumbnailStorePath(t.config, row.pathOf('constructor').slice(1))), false, 'no file in the store');
    const after = await t.db.selectFrom('live_images').select(['image_data', 'live_data']).where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.deepEqual(Object.keys((after.image_data as { presets: object }).presets), ['small']);
    assert.deepEqual(Object.keys((after.live_data as { presets: object }).presets), ['small']);
    assert.equal(server.service.generations, 0);
  });

  it("answers 503, not 500, to a request that joined a generation whose wait for the image's lock ran out", async () => {
    const server = await setup({ timeoutSeconds: 1, retryAfterSeconds: 3 });
    const row = await insertLiveRow(t.db, t.config, 'http://example.invalid/locked.jpg', original, ['small']);
    // Another process's generation of this image: its advisory lock, held by a transaction of ours until released.
    const release = await holdImageLock(row.hash);
    const first = rawGet(server.url, row.pathOf('medium'));
    // Its generation waits for the lock: a request joining it now starts its own clock after that wait began,
    // so the wait's lock_timeout reaches it before its own deadline does.
    await waitFor(
      async () =>
        (
          await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks
             WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(t.db)
        ).rows[0].n > 0,
      10_000,
      'the generation to wait for the lock',
    );
    const joined = await rawGet(server.url, row.pathOf('medium'));
    assert.equal(joined.status, 503, joined.body.toString());
    assert.equal(joined.headers['retry-after'], '3');
    assert.equal((await first).status, 503);
    await release();
    // The lock free again, the thumbnail is made: on a loaded machine a generation may outlast this server's 1 s
    // (the request answers 503 and the generation goes on), so asked again until it is there.
    await waitFor(async () => (await rawGet(server.url, row.pathOf('medium'))).status === 200, 30_000, 'the thumbnail made once the lock is free');
  });

  it('answers 503 with Retry-After past its bound on generations and waiting requests', async () => {
    const server = await setup({
      maxGenerations: 1,
      maxWaiting: 0,
      retryAfterSeconds: 7,
      origins: { web: { country: 'uk', sources: [{ type: 'http', baseUrl: origin.url('/') }] } },
    });
    origin.held.add('/slow.jpg');
    const arrived = origin.arrival('/slow.jpg');
    const slow = rawGet(server.url, '/web/small/slow.jpg');
    await arrived;
    const busy = await rawGet(server.url, '/web/small/other.jpg');
    assert.equal(busy.status, 503);
    assert.equal(busy.headers['retry-after'], '7');
    origin.release();
    assert.equal((await slow).status, 200);
    assert.equal((await rawGet(server.url, '/web/small/other.jpg')).status, 200);
  });

  it('a stop lets the answer in hand finish, then closes its connection instead of keeping it alive until keepAliveTimeout', async () => {
    const server = await setup({ origins: { web: { country: 'uk', sources: [{ type: 'http', baseUrl: origin.url('/') }] } } });
    // Long, so that a connection kept alive after its answer would hold the stop past the deadline below.
    server.http.keepAliveTimeout = 60_000;
    origin.held.add('/slow.jpg');
    const arrived = origin.arrival('/slow.jpg');
    const agent = new http.Agent({ keepAlive: true });
    closers.push(() => agent.destroy());
    const answer = new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get(`${server.url}/web/small/slow.jpg`, { agent }, (res) => res.resume().on('end', () => resolve(res))).on('error', reject);
    });
    await arrived;
    const closed = closeServer(server.http);
    origin.release();
    const res = await answer;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers.connection, 'close');
    await within(closed, 'stop once the answer in hand was sent', 15_000);
  });

  it('a client that never ends its headers is answered 408 and cut at headersTimeout, not up to 30 s later', async () => {
    const server = await setup();
    server.http.headersTimeout = 1000;
    const answer = await rawExchange(server.url, 'GET /healthz HTTP/1.1\r\nHost: imaged\r\n', 8000);
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  it('origins: an S3 bucket (s3rver, through @aws-sdk/client-s3) with a local-folder fallback, in its own, OpenRoss and phizer forms', async () => {
    const s3dir = fs.mkdtempSync('/tmp/lis-s3rver-');
    const s3 = await startS3rver(s3dir, ['listing-photos']);
    closers.push(async () => {
      await s3.close();
      fs.rmSync(s3dir, { recursive: true, force: true });
    });
    const uploads = fs.mkdtempSync('/tmp/lis-uploads-');
    closers.push(() => fs.rmSync(uploads, { recursive: true, force: true }));
    const server = await setup({
      s3: { 'listing-photos': { endpoint: s3.endpoint, ...s3Credentials() } },
      origins: {
        photos: {
          country: 'uk',
          datasourceId: 7,
          sources: [
            { type: 's3', bucket: 'listing-photos' },
            { type: 'folder', dir: uploads },
          ],
        },
      },
    });
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3Credentials() });
    await client.send(new PutObjectCommand({ Bucket: 'listing-photos', Key: 'flats/12/front.jpg', Body: original, ContentType: 'image/jpeg' }));
    client.destroy();

    const first = await rawGet(server.url, '/photos/small/flats/12/front.jpg');
    assert.equal(first.status, 200, first.body.toString());
    assert.equal(first.headers['x-imaged'], 'made');
    const row = await t.db.selectFrom('live_images').selectAll().where('image_url', '=', 's3://listing-photos/flats/12/front.jpg').executeTakeFirstOrThrow();
    assert.deepEqual([row.country, row.datasource_id, row.stage], ['uk', 7, 'push']);
    const phizer = await rawGet(server.url, '/photos/120x90/flats/12/front.jpg');
    const openRoss = await rawGet(server.url, '/photos/120/90/crop/flats/12/front.jpg');
    const pad = await rawGet(server.url, '/photos/320/240/resizecomp/flats/12/front.jpg');
    assert.deepEqual([phizer.status, phizer.headers['x-imaged']], [200, 'store']);
    assert.deepEqual(phizer.body, first.body);
    assert.deepEqual(openRoss.body, first.body);
    assert.deepEqual(
      await sharp(pad.body)
        .metadata()
        .then((m) => [m.width, m.height]),
      [320, 240],
    );

    // Only in the uploads folder (not yet in the bucket): the fallback, tried in parallel, has it.
    fs.mkdirSync(path.join(uploads, 'new'), { recursive: true });
    fs.writeFileSync(path.join(uploads, 'new/upload.jpg'), original);
    const fallback = await rawGet(server.url, '/photos/medium/new/upload.jpg');
    assert.equal(fallback.status, 200, fallback.body.toString());
    assert.equal((await rawGet(server.url, '/photos/small/nowhere/none.jpg')).status, 404);
  });
});

describe('lis_downloadd fetches s3:// URLs', function () {
  this.timeout(60_000);
  it("a row whose image_url is s3://bucket/key is downloaded through the S3 API with the bucket's configured credentials", async () => {
    const s3dir = fs.mkdtempSync('/tmp/lis-s3rver-');
    const s3 = await startS3rver(s3dir, ['etl-bucket']).catch((error: unknown) => {
      fs.rmSync(s3dir, { recursive: true, force: true });
      throw error;
    });
    let t: TestDatabase | null = null;
    let log: ReturnType<typeof createLogger> | null = null;
    try {
      t = await createTestDatabase({ overrides: { imaged: { s3: { 'etl-bucket': { endpoint: s3.endpoint, ...s3Credentials() } } } } });
      log = createLogger({ component: 'downloadd', log: t.config.log, screen: false });
      const picture = await photoJpeg(300, 200);
      const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3Credentials() });
      await client.send(new PutObjectCommand({ Bucket: 'etl-bucket', Key: 'x/1.jpg', Body: picture }));
      client.destroy();
      await insertQueuedRow(t.db, 's3://etl-bucket/x/1.jpg');
      await insertQueuedRow(t.db, 's3://etl-bucket/x/missing.jpg');
      await insertQueuedRow(t.db, 's3://unconfigured-bucket/x/1.jpg');
      await runDownloads(t, log, 'test:s3');
      const rows = await t.db.selectFrom('live_images').select(['image_url', 'stage', 'state', 'last_error_class', 'original_bytes']).orderBy('id').execute();
      assert.deepEqual(
        rows.map((r) => [r.stage, r.state, r.last_error_class]),
        [
          ['thumbnail', 'waiting', null],
          ['download', 'failed', 'http_404'],
          ['download', 'failed', 'bad_url'],
        ],
      );
      assert.equal(rows[0].original_bytes, picture.length);
      const { originalPath } = await import('../src/store/store-layout.ts');
      assert.deepEqual(fs.readFileSync(originalPath(t.config, 'uk', lis_hash_for_url('s3://etl-bucket/x/1.jpg'))), picture);
    } finally {
      if (log) await closeLogger(log);
      await t?.drop();
      await s3.close();
      fs.rmSync(s3dir, { recursive: true, force: true });
    }
  });
});
