import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { chromium, type Browser } from 'playwright-core';
import sharp from 'sharp';
import { lis_hash_for_url } from '../src/hash/image-hash.ts';
import { thumbnailRelativePath } from '../src/store/store-layout.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const CHROMIUM = '/usr/bin/chromium';

describe('lis web: the status page, in headless Chromium', () => {
  let t: TestDatabase;
  let web: Spawned;
  let base: string;
  let browser: Browser;
  const url = 'http://photos.example.com/listing/9/front.jpg';
  const hash = lis_hash_for_url(url);

  before(async function () {
    this.timeout(60_000);
    t = await createTestDatabase();
    const rel = thumbnailRelativePath('uk', hash, 'small', 'jpg');
    fs.mkdirSync(path.dirname(path.join(t.config.stores.thumbnails, rel)), { recursive: true });
    await sharp({ create: { width: 120, height: 90, channels: 3, background: '#3366cc' } })
      .jpeg()
      .toFile(path.join(t.config.stores.thumbnails, rel));
    const imageData = {
      original: { width: 800, height: 600, format: 'jpeg', bytes: 50000 },
      contentHash: 'f'.repeat(64),
      presets: { small: { width: 120, height: 90, bytes: 900, path: rel } },
    };
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state, image_data, image_class, store_host)
              VALUES ('uk', 16, ${url}, 'live', 'done', ${JSON.stringify(imageData)}::jsonb, 'photo', 'testhost'),
                     ('uk', 16, 'http://photos.example.com/listing/9/gone.jpg', 'download', 'failed', NULL, NULL, '')`.execute(t.db);
    await sql`UPDATE live_images SET last_error = 'HTTP 404 Not Found', last_error_class = 'http_404' WHERE state = 'failed'`.execute(t.db);
    await sql`INSERT INTO worker_minutes (worker_id, minute, component, country, done, failed)
              SELECT 'h:1', date_trunc('minute', now()) - make_interval(mins => g), 'downloadd', 'uk', 40 + g, g % 3 FROM generate_series(0, 9) g`.execute(
      t.db,
    );
    await sql`INSERT INTO queue_samples (at, country, stage, due, later, held)
              SELECT date_trunc('minute', now()) - make_interval(mins => g), 'uk', s, 100 - g * 5, 0, 0 FROM generate_series(0, 9) g, unnest(ARRAY['download', 'thumbnail']) s`.execute(
      t.db,
    );
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n)
              VALUES ('uk', 16, date_trunc('minute', now()), 'download', '', 30), ('uk', 16, date_trunc('minute', now()), 'download', 'http_404', 12)`.execute(
      t.db,
    );
    web = spawnTs('bin/lis', ['--config', t.writeConfig(), 'web', '--port', '0']);
    await waitFor(() => /status page at (http:\S+)/.test(web.output()), 20_000, 'lis web');
    base = /status page at (http:\S+)/.exec(web.output())![1];
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    web?.child.kill('SIGTERM');
    await web?.exited;
    await t?.drop();
  });

  it('renders, with data in its charts and tables', async function () {
    this.timeout(60_000);
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'binds to loopback by default');
    const page = await browser.newPage();
    await page.goto(base);
    await page.waitForSelector('#queue-chart path[data-series="download"]');
    const points = await page.$$eval('#queue-chart path[data-series]', (paths) => paths.map((p) => Number(p.getAttribute('data-points'))));
    assert.deepEqual(points, [10, 10]);
    assert.equal(await page.getAttribute('#throughput-chart path[data-series="downloadd"]', 'data-points'), '10');
    assert.equal(await page.locator('#failures-chart rect[data-bar="uk:16:http_404"]').count(), 1);
    assert.match((await page.textContent('#rows')) ?? '', /live\s*done\s*1/);
    assert.match((await page.textContent('#datasources')) ?? '', /http_404 12/);
    await page.close();
  });

  it('finds an image by URL or hash, with its row, history and thumbnails', async function () {
    this.timeout(60_000);
    const page = await browser.newPage();
    await page.goto(base);
    await page.fill('#q', url);
    await page.click('#lookup button');
    await page.waitForSelector(`.image[data-hash="${hash}"]`);
    const text = (await page.textContent('#lookup-result')) ?? '';
    assert.match(text, /queued by the ETL/);
    assert.match(text, /live/);
    const width = await page.$eval(
      '.thumbs img',
      (img) =>
        new Promise<number>((resolve) =>
          (img as HTMLImageElement).complete
            ? resolve((img as HTMLImageElement).naturalWidth)
            : img.addEventListener('load', () => resolve((img as HTMLImageElement).naturalWidth)),
        ),
    );
    assert.equal(width, 120, 'the thumbnail is served from the store');
    await page.fill('#q', hash.slice(0, 31) + '0');
    await page.click('#lookup button');
    await page.waitForSelector('text=no such image');
    await page.close();
  });

  it('scans live_images (rows by state, frontend lag) at most once a minute for all viewers, and says how old those figures are', async function () {
    this.timeout(60_000);
    type Overview = { rows: unknown[]; rowsAt: string; queue: Array<{ country: string }> };
    const first = (await (await fetch(`${base}api/overview`)).json()) as Overview;
    await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('de', 3, 'http://photos.example.com/listing/10/new.jpg')`.execute(t.db);
    const second = (await (await fetch(`${base}api/overview`)).json()) as Overview;
    assert.deepEqual(second.rows, first.rows, 'a refresh within the minute does not count the table again');
    assert.equal(second.rowsAt, first.rowsAt);
    assert.ok(
      second.queue.some((q) => q.country === 'de'),
      'the queue, read through the waiting rows only, is current',
    );
    const page = await browser.newPage();
    await page.goto(base);
    await page.waitForSelector('#rows table');
    assert.match((await page.textContent('#rows-at')) ?? '', /as of \d/);
    await page.close();
  });

  it("shows every time in the viewer's own zone, saying which, not some in UTC and some in local time", async function () {
    this.timeout(60_000);
    await sql`INSERT INTO manager_events (at, check_name, country, rows, detail) VALUES ('2026-11-30T01:00:00Z', 'stuck_jobs', 'uk', 3, 'released 3 rows')`.execute(
      t.db,
    );
    const context = await browser.newContext({ timezoneId: 'Asia/Kolkata' });
    try {
      const page = await context.newPage();
      await page.goto(base);
      await page.waitForSelector('#events table');
      const events = (await page.textContent('#events')) ?? '';
      assert.match(events, /2026-11-30 06:30:00 (GMT\+5:30|IST)/, events);
      assert.doesNotMatch(events, /T01:00:00/, 'not UTC ISO beside local times');
      assert.match((await page.textContent('#updated')) ?? '', /updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d (GMT\+5:30|IST)/);
    } finally {
      await context.close();
    }
  });

  it('shows text from the database as text: markup in an event, a reason or a host name never runs', async function () {
    this.timeout(60_000);
    const markup = '<img src=x onerror="window.__pwned=1">';
    await sql`INSERT INTO manager_events (check_name, country, rows, detail) VALUES ('upkeep', 'uk', 0, ${`failed: ${markup}`})`.execute(t.db);
    await sql`INSERT INTO workers (id, component, host, pid, country) VALUES ('evil:1:aa', 'downloadd', ${markup}, 1, 'uk')`.execute(t.db);
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n)
              VALUES ('uk', 17, date_trunc('minute', now()), 'download', ${markup}, 5)`.execute(t.db);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(base);
    await page.waitForSelector('#events table');
    assert.match((await page.textContent('#events')) ?? '', /failed: <img src=x onerror/);
    assert.match((await page.textContent('#workers')) ?? '', /<img src=x/);
    assert.match((await page.textContent('#datasources')) ?? '', /<img src=x/);
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    assert.equal(await page.locator('main img').count(), 0, 'no element made of the markup');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('is read-only and serves nothing outside the thumbnail layout', async () => {
    assert.equal((await fetch(`${base}api/overview`, { method: 'POST' })).status, 405);
    assert.equal((await fetch(`${base}thumbs/..%2F..%2Fetc%2Fpasswd`)).status, 404);
    assert.equal((await fetch(`${base}api/lookup`)).status, 400);
  });
});
