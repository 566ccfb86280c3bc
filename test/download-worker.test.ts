import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { sql } from 'kysely';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { runDaemon } from '../src/daemon/run-daemon.ts';
import { DownloadWorker } from '../src/download/download-worker.ts';
import { refreshDueRows } from '../src/cli/refresh-command.ts';
import { createLogger } from '../src/log/create-logger.ts';
import { originalPath } from '../src/store/store-layout.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { countBy, relistAll } from './helpers/rows.ts';
import { freePort } from './helpers/free-port.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { makeTestImages, startImageServer, type ImageServer, type TestImages } from './helpers/image-server.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { runThumbnailStage } from './helpers/thumbnail-fixtures.ts';
import { restoreWallClock, stepWallClock } from './helpers/wall-clock.ts';

interface RowView {
  image_url: string;
  image_hash: string;
  stage: string;
  state: string;
  last_error: string | null;
  last_error_class: string | null;
  attempts: number;
  next_attempt_at: Date;
  updated_at: Date;
  content_hash: string | null;
  etag: string | null;
  last_modified: string | null;
  original_bytes: number | null;
  original_format: string | null;
  store_host: string;
  downloaded_at: Date | null;
}

describe('lis_downloadd worker (a real HTTP server, a real database)', function () {
  this.timeout(30_000);
  let images: TestImages;
  let server: ImageServer;
  let t: TestDatabase;

  before(async () => {
    images = await makeTestImages();
    server = await startImageServer(images);
  });
  after(async () => server.close());
  afterEach(async () => t?.drop());

  async function setup(download: LisConfigInput['download'] = TEST_DOWNLOAD) {
    t = await createTestDatabase({ overrides: { download } });
  }

  async function enqueue(urls: string[]): Promise<void> {
    await t.db
      .insertInto('live_images')
      .values(urls.map((image_url) => ({ country: 'uk', datasource_id: 1, image_url })))
      .execute();
  }

  /** lis_downloadd's run by hand, in this process; `signal` stops it. */
  async function run(options: { noproxy?: boolean; signal?: AbortSignal; worker?: DownloadWorker } = {}) {
    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false, files: false, verbose: true });
    const worker = options.worker ?? new DownloadWorker(t.config, t.db, 'uk', { noproxy: options.noproxy });
    return runDaemon(worker, {
      config: t.config,
      db: t.db,
      databaseUrl: t.url,
      log,
      country: 'uk',
      chunkSize: 500,
      service: false,
      signal: options.signal ?? new AbortController().signal,
      workerId: `test:${crypto.randomUUID()}`,
    });
  }

  async function rows(): Promise<Map<string, RowView>> {
    const found = await t.db
      .selectFrom('live_images')
      .select([
        'image_url',
        'image_hash',
        'stage',
        'state',
        'last_error',
        'last_error_class',
        'attempts',
        'next_attempt_at',
        'updated_at',
        'content_hash',
        'etag',
        'last_modified',
        'original_bytes',
        'original_format',
        'store_host',
        'downloaded_at',
      ])
      .execute();
    return new Map(found.map((r) => [r.image_url.replace(server.origin, '').replace(`http://localhost:${server.port}`, ''), r as RowView]));
  }

  const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
  const storeFiles = () => (fs.existsSync(t.config.stores.originals) ? fs.readdirSync(t.config.stores.originals, { recursive: true }).map(String) : []);

  it('ends every case in the right state with the right reason, and stores only whole images', async () => {
    await setup();
    const good: Record<string, [Buffer, string]> = {
      '/good.jpg': [images.jpeg, 'jpeg'],
      '/good.png': [images.png, 'png'],
      '/good.webp': [images.webp, 'webp'],
      '/good.gif': [images.gif, 'gif'],
      '/good.avif': [images.avif, 'avif'],
      '/untyped.png': [images.png, 'png'],
      '/gzip.jpg': [images.jpeg, 'jpeg'],
      '/redirect-good': [images.jpeg, 'jpeg'],
      // Whole transfers with a damaged trailer the decoder reads without a warning.
      '/no-trailer.gif': [images.gifNoTrailer, 'gif'],
      '/bad-iend.png': [images.pngBadIendType, 'png'],
      '/ffc9.jpg': [images.jpegEndsFfc9, 'jpeg'],
    };
    const bad: Record<string, [string, RegExp, 'waiting' | 'failed']> = {
      '/404': ['http_404', /^HTTP 404 Not Found$/, 'failed'],
      '/410': ['http_410', /^HTTP 410 Gone$/, 'failed'],
      '/403': ['http_4xx', /^HTTP 403 Forbidden$/, 'failed'],
      '/500': ['http_5xx', /^HTTP 500 Internal Server Error$/, 'waiting'],
      '/flaky.jpg?a': ['http_5xx', /^HTTP 500/, 'waiting'],
      '/429': ['http_429', /^HTTP 429 Too Many Requests$/, 'waiting'],
      '/503': ['http_5xx', /^HTTP 503 Service Unavailable$/, 'waiting'],
      '/endless.jpg': ['too_large', /^too large: more than 1000000 bytes/, 'failed'],
      '/huge-declared.jpg': ['too_large', /^too large: Content-Length 99999999999/, 'failed'],
      '/drip.jpg': ['timeout', /^timeout: not done within 2 s/, 'waiting'],
      '/slow-headers.jpg': ['timeout', /^timeout: waiting for the first byte took too long$/, 'waiting'],
      // Cut transfers: retried.
      '/lying-length.jpg': ['truncated', /^truncated: the transfer was cut: \d+ of the 50000 bytes the Content-Length announced/, 'waiting'],
      '/reset.jpg': ['truncated', /^truncated: the transfer was cut: \d+ of the \d+ bytes the Content-Length announced/, 'waiting'],
      '/chunked-cut.jpg': ['truncated', /^truncated: the transfer was cut: the chunked body ended without its last chunk/, 'waiting'],
      // The server broke HTTP: told as it is.
      '/overlong.jpg': ['overlong_body', /^the server sent more bytes than its Content-Length \(\d+\)/, 'failed'],
      '/loop-a': ['redirect_loop', /redirect/i, 'failed'],
      '/redirect-loopback': ['refused_address', /^refused address: 127\.0\.0\.2 \(loopback\)$/, 'failed'],
      '/redirect-mapped': [
        'refused_address',
        /^refused address: ::ffff:7f00:1 \(IPv4-mapped\)$|^refused address: ::ffff:127\.0\.0\.1 \(IPv4-mapped\)$/,
        'failed',
      ],
      '/redirect-metadata': ['refused_address', /^refused address: 169\.254\.169\.254 \(link-local\)$/, 'failed'],
      '/redirect-ftp': ['bad_url', /^bad URL: /, 'failed'],
      '/html-as-jpeg.jpg': ['not_image', /^not an image \(starts with "<!DOCTYPE html>\\x0a"\)$/, 'failed'],
      '/empty.jpg': ['not_image', /^not an image \(empty body\)$/, 'failed'],
      // Complete transfers of files stored cut short: the decoder's words, never retried.
      '/truncated.jpg': ['corrupt_image', /^JPEG ends without its end-of-image marker, and the decoder cannot read it: .*premature end of JPEG/i, 'failed'],
      '/truncated.png': ['corrupt_image', /^PNG ends before its IEND chunk, and the decoder cannot read it: .*PNG ends inside the IDAT chunk/, 'failed'],
      '/bad-gzip.jpg': ['bad_encoding', /^bad content encoding: /, 'failed'],
    };
    // A 429 or 503 with Retry-After pauses its host: those two are asked of another host name, so that the rest is asked.
    const throttling = new Set(['/429', '/503']);
    await enqueue([...Object.keys(good), ...Object.keys(bad)].map((p) => (throttling.has(p) ? `http://localhost:${server.port}${p}` : server.url(p))));
    const totals = await run();
    assert.equal(totals.done + totals.failed, Object.keys(good).length + Object.keys(bad).length);

    const found = await rows();
    for (const [p, [bytes, format]] of Object.entries(good)) {
      const row = found.get(p)!;
      assert.equal(`${row.stage}/${row.state}`, 'thumbnail/waiting', `${p}: ${row.last_error}`);
      assert.equal(row.content_hash, sha256(bytes), p);
      assert.equal(row.original_bytes, bytes.length, p);
      assert.equal(row.original_format, format, p);
      assert.equal(row.store_host, 'testhost');
      assert.ok(row.downloaded_at, p);
      assert.deepEqual(fs.readFileSync(originalPath(t.config, 'uk', row.image_hash)), bytes, p);
    }
    for (const [p, [errorClass, reason, state]] of Object.entries(bad)) {
      const row = found.get(p)!;
      assert.equal(`${row.stage}/${row.state}/${row.last_error_class}`, `download/${state}/${errorClass}`, `${p}: ${row.last_error}`);
      assert.match(row.last_error!, reason, `${p}: ${row.last_error}`);
      assert.equal(row.attempts, 1, p);
      assert.ok(!fs.existsSync(originalPath(t.config, 'uk', row.image_hash)), `${p}: no original stored`);
    }
    // Retry-After wins over the (30 s) backoff: 120 s for the 429, 600 s for the 503. Counted from the failure (the
    // statement that set next_attempt_at stamped updated_at), not from now: the run goes on for a while after it.
    const waitOf = (p: string) => (found.get(p)!.next_attempt_at.getTime() - found.get(p)!.updated_at.getTime()) / 1000;
    assert.ok(waitOf('/429') > 100 && waitOf('/429') <= 121, `429 waits ${waitOf('/429')}`);
    assert.ok(waitOf('/503') > 500, `503 waits ${waitOf('/503')}`);
    assert.ok(
      storeFiles().every((f) => !f.includes('.tmp-')),
      `no temp files left: ${storeFiles().join(', ')}`,
    );
    assert.equal(server.lastHeaders.get('/good.jpg')!['user-agent'], 'ImageSys-test/1 (+mailto:ops@example.invalid)');

    // The flaky URL works on its next attempt.
    await sql`UPDATE live_images SET next_attempt_at = now() WHERE image_url LIKE ${'%/flaky.jpg%'}`.execute(t.db);
    await relistAll(t.db);
    await run();
    const flaky = (await rows()).get('/flaky.jpg?a')!;
    assert.equal(`${flaky.stage}/${flaky.state}`, 'thumbnail/waiting');
    assert.equal(flaky.last_error, null);
  });

  it('complete downloads with a damaged trailer that the decoder reads go through download and thumbnailing', async () => {
    await setup();
    const damaged = ['/no-trailer.gif', '/bad-iend.png', '/ffc9.jpg'];
    await enqueue(damaged.map((p) => server.url(p)));
    await run();
    await runThumbnailStage(t.db, t.config, t.url);
    const found = await rows();
    for (const p of damaged) {
      const row = found.get(p)!;
      assert.equal(`${row.stage}/${row.state}`, 'push/waiting', `${p}: ${row.last_error}`);
      assert.equal(row.attempts, 0, p);
    }
    const thumbnailed = await t.db.selectFrom('live_images').select(['image_url', 'image_data']).execute();
    for (const r of thumbnailed) assert.ok(r.image_data && 'presets' in r.image_data, r.image_url);
  });

  it('keeps connections alive and holds each host to its cap', async () => {
    await setup({ ...TEST_DOWNLOAD, concurrency: 8, perHostConcurrency: 2 });
    server.maxActive = 0;
    const before = server.connections();
    await enqueue(Array.from({ length: 12 }, (_, i) => server.url(`/slow-ok.jpg?${i}`)));
    const totals = await run();
    assert.equal(totals.done, 12);
    assert.ok(server.maxActive <= 2, `at most 2 at once to one host, saw ${server.maxActive}`);
    assert.ok(server.connections() - before <= 2, `keep-alive: ${server.connections() - before} connections for 12 requests`);
  });

  it('a host that answers 429 with Retry-After is asked no more meanwhile: its other rows wait that long, uncharged; other hosts go on', async () => {
    await setup({ ...TEST_DOWNLOAD, concurrency: 8, perHostConcurrency: 2 });
    const hitsBefore = server.hits.get('/429') ?? 0;
    // Another host name for the same server: `localhost` (its ::1 answer is refused, 127.0.0.1 allowed).
    await enqueue([
      ...Array.from({ length: 30 }, (_, i) => server.url(`/429?${i}`)),
      ...Array.from({ length: 6 }, (_, i) => `http://localhost:${server.port}/good.jpg?other${i}`),
    ]);
    const totals = await run();
    const asked = (server.hits.get('/429') ?? 0) - hitsBefore;
    // The downloads already under way when the first 429 came back (perHostConcurrency) may end in one too; no more.
    assert.ok(asked >= 1 && asked <= 2, `the throttling host was asked ${asked} times`);
    const found = await t.db
      .selectFrom('live_images')
      .select(['image_url', 'stage', 'state', 'attempts', 'last_error_class', 'last_error', 'next_attempt_at'])
      .execute();
    const throttled = found.filter((r) => r.image_url.includes('/429'));
    const charged = throttled.filter((r) => r.attempts === 1);
    assert.equal(charged.length, asked, 'only the rows asked are charged');
    for (const r of charged) assert.equal(`${r.state}/${r.last_error_class}`, 'waiting/http_429');
    const held = throttled.filter((r) => r.attempts === 0);
    assert.equal(held.length, 30 - asked);
    for (const r of held) {
      assert.equal(`${r.stage}/${r.state}/${r.last_error_class}`, 'download/waiting/host_throttled', r.last_error!);
      assert.match(
        r.last_error!,
        /^not tried: 127\.0\.0\.1 asked us to wait until \S+Z \(HTTP 429 Too Many Requests with Retry-After on another of its URLs\)$/,
      );
      const wait = (r.next_attempt_at.getTime() - Date.now()) / 1000;
      assert.ok(wait > 100 && wait <= 121, `held for the Retry-After (120 s), not queue.oursRetrySeconds: ${wait}`);
    }
    assert.equal(found.filter((r) => r.image_url.includes('localhost') && r.stage === 'thumbnail').length, 6, 'the other host went on');
    assert.equal(totals.done, 6);
  });

  it("a Retry-After date is counted from the source's own Date: a host whose clock is behind ours is still waited for, its other rows uncharged", async () => {
    await setup({ ...TEST_DOWNLOAD, concurrency: 4, perHostConcurrency: 1 });
    const hitsBefore = server.hits.get('/429-behind') ?? 0;
    await enqueue(Array.from({ length: 8 }, (_, i) => server.url(`/429-behind?${i}`)));
    await run();
    const asked = (server.hits.get('/429-behind') ?? 0) - hitsBefore;
    // Read against our clock, its date was 8 minutes past: no pause, and every row was asked and charged an attempt.
    assert.equal(asked, 1, `the throttling host was asked ${asked} times`);
    const found = await t.db.selectFrom('live_images').select(['attempts', 'last_error_class', 'next_attempt_at']).orderBy('attempts').execute();
    assert.deepEqual(
      found.map((r) => `${r.attempts}/${r.last_error_class}`),
      [...Array.from({ length: 7 }, () => '0/host_throttled'), '1/http_429'],
    );
    for (const r of found) {
      const wait = (r.next_attempt_at.getTime() - Date.now()) / 1000;
      assert.ok(wait > 100 && wait <= 121, `held for its 2 minutes: ${wait}`);
    }
  });

  describe('when the wall clock steps (NTP) while it runs', () => {
    let worker: DownloadWorker | undefined;
    afterEach(() => {
      restoreWallClock();
      worker?.close();
    });

    it('an hour back: a host asked a moment ago is asked again at once, not an hour later', async () => {
      // A delay between starts keeps the host's last start after its run (with none, the same comes of a step
      // in the middle of a chunk of one host's rows).
      await setup({ ...TEST_DOWNLOAD, perHostDelaySeconds: 1 });
      stepWallClock(0); // the stepped clock in place before the worker is made (it may keep \`Date.now\` itself)
      worker = new DownloadWorker(t.config, t.db, 'uk');
      await enqueue([server.url('/good.jpg?before-the-step')]);
      assert.equal((await run({ worker })).done, 1);
      stepWallClock(-3600_000);
      await enqueue([server.url('/good.jpg?after-the-step')]);
      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), 4000);
      const totals = await run({ worker, signal: stop.signal }).finally(() => clearTimeout(timer));
      assert.equal(totals.done, 1, "the host's last start looked an hour ahead: its row waited for it");
    });

    it("a day off: the row's downloaded_at is the database's time, not this host's (refresh --older-than-days reads it so)", async () => {
      await setup();
      stepWallClock(-86_400_000);
      worker = new DownloadWorker(t.config, t.db, 'uk');
      await enqueue([server.url('/good.jpg?skewed-host')]);
      assert.equal((await run({ worker })).done, 1);
      const { off } = await t.db
        .selectFrom('live_images')
        .select(sql<number>`extract(epoch FROM now() - downloaded_at)::float8`.as('off'))
        .executeTakeFirstOrThrow();
      assert.ok(Math.abs(off) < 60, `downloaded_at is ${off} s before the database's now()`);
    });

    it("forward past a host's Retry-After: its pause still lasts the time it asked for, its rows uncharged", async () => {
      await setup({ ...TEST_DOWNLOAD, perHostConcurrency: 1 });
      worker = new DownloadWorker(t.config, t.db, 'uk');
      const hitsBefore = server.hits.get('/429') ?? 0;
      await enqueue([server.url('/429?before-the-step')]);
      await run({ worker });
      stepWallClock(600_000);
      await enqueue(Array.from({ length: 3 }, (_, i) => server.url(`/429?after-the-step-${i}`)));
      await run({ worker });
      assert.equal((server.hits.get('/429') ?? 0) - hitsBefore, 1, 'asked once: the 120 s it asked for are not over');
      const after = await t.db.selectFrom('live_images').select(['attempts', 'last_error_class']).where('image_url', 'like', '%after-the-step%').execute();
      assert.deepEqual(
        after.map((r) => `${r.attempts}/${r.last_error_class}`),
        ['0/host_throttled', '0/host_throttled', '0/host_throttled'],
      );
    });
  });

  it('refuses loopback reached through DNS or an IP literal when not allowed', async () => {
    await setup({ ...TEST_DOWNLOAD, allowAddresses: [] });
    await enqueue([
      `http://localhost:${server.port}/good.jpg`,
      server.url('/good.jpg'),
      `http://[::1]:${server.port}/good.jpg`,
      `http://2130706433:${server.port}/good.jpg`,
    ]);
    const hitsBefore = server.hits.get('/good.jpg') ?? 0;
    await run();
    const found = await t.db.selectFrom('live_images').select(['image_url', 'state', 'last_error_class', 'last_error']).execute();
    for (const row of found) {
      assert.equal(`${row.state}/${row.last_error_class}`, 'failed/refused_address', `${row.image_url}: ${row.last_error}`);
    }
    assert.match(found.find((r) => r.image_url.includes('localhost'))!.last_error!, /^refused address: localhost resolves to (127\.0\.0\.1|::1) \(loopback\)$/);
    assert.equal(server.hits.get('/good.jpg') ?? 0, hitsBefore, 'no request reached the server');
  });

  it('refresh: 304 and identical bytes go back to live without new thumbnails; changed bytes go on', async () => {
    await setup();
    server.etagVersion = 1;
    await enqueue([server.url('/etag.jpg'), server.url('/same.jpg')]);
    await run();
    let found = await rows();
    assert.equal(found.get('/etag.jpg')!.etag, '"v1"');
    assert.equal(found.get('/etag.jpg')!.last_modified, 'Thu, 01 Jan 2026 00:00:00 GMT');
    // As if thumbnailed and pushed a while ago: the served version was made from these bytes.
    await sql`UPDATE live_images SET stage = 'live', state = 'done', downloaded_at = now() - interval '40 days',
                     image_data = jsonb_build_object('contentHash', content_hash), live_data = jsonb_build_object('contentHash', content_hash)`.execute(t.db);
    await relistAll(t.db);
    // The operator's command, as a real process.
    const config = t.writeConfig();
    const badFlag = spawnTs('bin/lis', ['--config', config, 'refresh', '--country', 'uk', '--older-than-days', 'soon']);
    assert.equal((await badFlag.exited).code, 2, badFlag.output());
    assert.match(badFlag.output(), /--older-than-days "soon"/);
    const help = spawnTs('bin/lis', ['refresh', '--help']);
    assert.equal((await help.exited).code, 0, help.output());
    assert.match(help.output(), /--older-than-days <n>\s+refresh originals downloaded longer ago than this\s+\(default: 30\)/, 'a number, not "30"');
    // The default, 30 days, as --help says.
    const refresh = spawnTs('bin/lis', ['--config', config, 'refresh', '--country', 'uk']);
    assert.equal((await refresh.exited).code, 0, refresh.output());
    assert.match(refresh.output(), /^2 live images queued for refresh \(downloaded more than 30 days ago\)$/m);
    assert.deepEqual(
      [...(await rows()).values()].map((r) => `${r.stage}/${r.state}`),
      ['download/waiting', 'download/waiting'],
    );
    await run();
    found = await rows();
    assert.equal(server.lastHeaders.get('/etag.jpg')!['if-none-match'], '"v1"');
    assert.equal(server.lastHeaders.get('/etag.jpg')!['if-modified-since'], 'Thu, 01 Jan 2026 00:00:00 GMT');
    for (const p of ['/etag.jpg', '/same.jpg']) {
      const row = found.get(p)!;
      assert.equal(`${row.stage}/${row.state}`, 'live/done', `${p} unchanged: no new thumbnails`);
      assert.equal(row.store_host, t.config.host, `${p}: named again as the host holding its files (the refresh cleared it)`);
      assert.ok(Date.now() - row.downloaded_at!.getTime() < 60_000, `${p} downloaded_at renewed`);
    }
    assert.equal(await refreshDueRows(t.db, { country: 'uk', olderThanDays: 30 }), 0, 'nothing is due any more');

    server.etagVersion = 2;
    await sql`UPDATE live_images SET downloaded_at = now() - interval '40 days'`.execute(t.db);
    await refreshDueRows(t.db, { country: 'uk', olderThanDays: 30 });
    await run();
    const changed = (await rows()).get('/etag.jpg')!;
    assert.equal(`${changed.stage}/${changed.state}`, 'thumbnail/waiting');
    assert.equal(changed.etag, '"v2"');
    assert.equal(changed.content_hash, sha256(images.jpeg2));
    assert.deepEqual(fs.readFileSync(originalPath(t.config, 'uk', changed.image_hash)), images.jpeg2);
  });

  it('a row back in download whose served version is not of the bytes on disk is downloaded whole and thumbnailed, never sent to live by a 304', async () => {
    await setup();
    server.etagVersion = 1;
    await enqueue([server.url('/etag.jpg'), server.url('/same.jpg'), server.url('/etag.jpg?reworked')]);
    await run();
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 3 });
    // Sent back to download with the original still in this host's store (lis_managerd's bad_retry_jobs, a host
    // gone on a shared store): never live; live, but the version in the works (image_data) not the served one;
    // and live with an older version's pictures than the bytes downloaded since.
    await sql`UPDATE live_images SET stage = 'download', state = 'waiting', store_host = '', image_data = NULL, live_data = NULL
               WHERE image_url LIKE '%/same.jpg'`.execute(t.db);
    await sql`UPDATE live_images SET stage = 'download', state = 'waiting', store_host = '',
                     live_data = jsonb_build_object('contentHash', content_hash, 'version', 1),
                     image_data = jsonb_build_object('contentHash', content_hash, 'version', 2)
               WHERE image_url LIKE '%?reworked'`.execute(t.db);
    await sql`UPDATE live_images SET stage = 'download', state = 'waiting', store_host = '',
                     live_data = jsonb_build_object('contentHash', 'an older original'), image_data = jsonb_build_object('contentHash', 'an older original')
               WHERE image_url LIKE '%/etag.jpg'`.execute(t.db);
    await relistAll(t.db);
    server.lastHeaders.clear();
    await run();
    const found = await rows();
    for (const p of ['/etag.jpg', '/same.jpg', '/etag.jpg?reworked']) {
      const row = found.get(p)!;
      assert.equal(`${row.stage}/${row.state}`, 'thumbnail/waiting', `${p}: its thumbnails are made from these bytes, not taken as served`);
      assert.equal(row.store_host, t.config.host);
    }
    assert.equal(server.lastHeaders.get('/etag.jpg')!['if-none-match'], undefined, 'asked whole, not conditionally');
  });

  it('goes through download.proxy (CONNECT), and straight past it with --noproxy', async () => {
    const tunnels: string[] = [];
    const proxy = http.createServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req, client, head) => {
      tunnels.push(req.url!);
      const [host, port] = req.url!.split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client).pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      await setup({ ...TEST_DOWNLOAD, proxy: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}` });
      await enqueue([server.url('/good.png'), server.url('/redirect-metadata')]);
      await run();
      let found = await rows();
      assert.equal(found.get('/good.png')!.stage, 'thumbnail');
      assert.equal(found.get('/redirect-metadata')!.last_error_class, 'refused_address', 'still checked with a proxy');
      assert.ok(tunnels.length >= 1 && tunnels.every((to) => to === `127.0.0.1:${server.port}`), tunnels.join());
      const tunnelled = tunnels.length;
      await enqueue([server.url('/good.gif')]);
      await run({ noproxy: true });
      found = await rows();
      assert.equal(found.get('/good.gif')!.stage, 'thumbnail');
      assert.equal(tunnels.length, tunnelled, 'no tunnel with --noproxy');
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('a configured proxy that cannot be reached is our fault (proxy_down): nothing charged, the rows wait queue.oursRetrySeconds', async () => {
    // Nothing listens on a reserved port: every connect to the proxy is refused. And a proxy name that does not resolve.
    const proxies = [`http://127.0.0.1:${await freePort()}`, 'http://no-such-proxy.invalid:3128'];
    for (const proxy of proxies) {
      if (proxy !== proxies[0]) await t.drop(); // afterEach drops the last
      await setup({ ...TEST_DOWNLOAD, proxy });
      await enqueue([server.url('/good.jpg'), server.url('/good.png')]);
      const hits = server.hits.get('/good.jpg') ?? 0;
      const totals = await run();
      assert.equal(totals.done, 0);
      const found = await t.db.selectFrom('live_images').select(['state', 'attempts', 'last_error_class', 'last_error', 'next_attempt_at']).execute();
      for (const r of found) {
        assert.deepEqual([r.state, r.attempts, r.last_error_class], ['waiting', 0, 'proxy_down'], `${proxy}: ${r.last_error}`);
        assert.match(
          r.last_error!,
          new RegExp(`^proxy down: cannot reach download\\.proxy ${new URL(proxy).host.replace(/\./g, '\\.')} \\(.+\\); not the image's fault$`),
        );
        const wait = (r.next_attempt_at.getTime() - Date.now()) / 1000;
        assert.ok(wait > 50 && wait <= 60, `waits queue.oursRetrySeconds: ${wait}`);
      }
      assert.equal(server.hits.get('/good.jpg') ?? 0, hits, 'nothing reached the server');
    }
  });

  it('on a stop, starts no new download and gives the unstarted rows back untouched', async () => {
    await setup({ ...TEST_DOWNLOAD, concurrency: 2, perHostConcurrency: 2 });
    await enqueue(Array.from({ length: 20 }, (_, i) => server.url(`/slow-ok.jpg?stop${i}`)));
    const stop = new AbortController();
    const hitsBefore = server.hits.get('/slow-ok.jpg') ?? 0;
    const running = run({ signal: stop.signal });
    await waitFor(() => (server.hits.get('/slow-ok.jpg') ?? 0) - hitsBefore >= 3, 10_000, 'downloads under way');
    stop.abort();
    const totals = await running;
    const counts = await countBy(t.db);
    assert.equal(counts['download/waiting/locked'], undefined, JSON.stringify(counts));
    assert.ok(totals.done >= 3 && totals.done < 20, `done ${totals.done}`);
    assert.equal(counts['thumbnail/waiting'], totals.done);
    assert.equal(counts['download/waiting'], 20 - totals.done);
    assert.equal((server.hits.get('/slow-ok.jpg') ?? 0) - hitsBefore, totals.done, 'every started download was finished and reported');
    const { rows: tried } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(Number(tried[0].n), 0, 'given back without an attempt counted');
  });
});
