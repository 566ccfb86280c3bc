import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { sql } from 'kysely';
// As listing code would: by the package's name, through its public entry only.
import { ImageSys, lis_hash_for_url, type OpenOptions, type SearchApiImage } from 'imagesys';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { within } from './helpers/within-deadline.ts';

describe('the Interface (imported as a package)', () => {
  let t: TestDatabase;
  let images: ImageSys;
  const liveUrl = 'http://feed.example.com/listing/1/photo-1.jpg';
  const liveHash = lis_hash_for_url(liveUrl);

  beforeEach(async () => {
    t = await createTestDatabase({ overrides: { searchApi: { thumbnailBaseUrl: 'https://img.example.com/t' } } });
    images = await ImageSys.open({ config: t.config });
    const imageData = {
      original: { width: 1800, height: 1200, format: 'jpeg', bytes: 456789 },
      contentHash: 'c'.repeat(64),
      presets: {
        small: { width: 120, height: 80, bytes: 3000, path: `uk/${liveHash.slice(0, 2)}/${liveHash.slice(2, 4)}/${liveHash}_small.jpg` },
        large: {
          width: 640,
          height: 427,
          bytes: 40000,
          path: `uk/${liveHash.slice(0, 2)}/${liveHash.slice(2, 4)}/${liveHash}_large.jpg`,
          twins: { webp: { path: `uk/x/${liveHash}_large.webp`, bytes: 30000 } },
        },
      },
      dominantColor: '#a0b0c0',
      placeholder: { type: 'thumbhash', data: 'YJqGPQw7sFlslqhFafSE+Q6oJ1h2iHB2Rw' },
    };
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state, image_data, live_data, image_class)
              VALUES ('uk', 16, ${liveUrl}, 'live', 'done', ${JSON.stringify(imageData)}::jsonb, ${JSON.stringify(imageData)}::jsonb, 'photo'),
                     ('uk', 16, 'http://feed.example.com/listing/1/photo-2.jpg', 'push', 'waiting', ${JSON.stringify(imageData)}::jsonb, NULL, 'photo')`.execute(
      t.db,
    );
  });
  afterEach(async () => {
    await images.close();
    await t.drop();
  });

  it('gives the search API data of a live image by hash, and null for one that is not live', async () => {
    const data = await images.getSearchApiDataForHash(liveHash);
    const expected: SearchApiImage = {
      hash: liveHash,
      country: 'uk',
      url: liveUrl,
      imageClass: 'photo',
      original: { width: 1800, height: 1200, format: 'jpeg', bytes: 456789 },
      thumbnails: {
        small: { url: `https://img.example.com/t/uk/${liveHash.slice(0, 2)}/${liveHash.slice(2, 4)}/${liveHash}_small.jpg`, width: 120, height: 80, twins: {} },
        large: {
          url: `https://img.example.com/t/uk/${liveHash.slice(0, 2)}/${liveHash.slice(2, 4)}/${liveHash}_large.jpg`,
          width: 640,
          height: 427,
          twins: { webp: `https://img.example.com/t/uk/x/${liveHash}_large.webp` },
        },
      },
      dominantColor: '#a0b0c0',
      placeholder: { type: 'thumbhash', data: 'YJqGPQw7sFlslqhFafSE+Q6oJ1h2iHB2Rw' },
    };
    assert.deepEqual(data, expected);
    assert.equal(await images.getSearchApiDataForHash(lis_hash_for_url('http://feed.example.com/listing/1/photo-2.jpg')), null, 'in push: not live yet');
    assert.equal(await images.getSearchApiDataForHash(lis_hash_for_url('http://nowhere.example.com/x.jpg')), null);
    assert.equal(await images.getSearchApiDataForHash(liveHash, { country: 'fr' }), null);
    await assert.rejects(images.getSearchApiDataForHash('not-a-hash'), /not an image hash/);
    await assert.rejects(
      images.getSearchApiDataForHash(liveHash, { country: 7 as unknown as string }),
      /^UsageError: ImageSys\.getSearchApiDataForHash: country must be/,
    );
  });

  it('answers many hashes in one query', async () => {
    const other = lis_hash_for_url('http://nowhere.example.com/x.jpg');
    const map = await images.getSearchApiDataForHashes([liveHash, other, liveHash]);
    assert.deepEqual([...map.keys()], [liveHash, other]);
    assert.equal(map.get(liveHash)?.thumbnails.small.width, 120);
    assert.equal(map.get(other), null);
  });

  it('imagesForSiBuild gives each photo its hash and state, queues new URLs and refreshes known ones', async () => {
    await sql`UPDATE live_images SET last_seen = now() - interval '20 days'`.execute(t.db);
    const urls = [liveUrl, 'http://feed.example.com/listing/1/photo-3.jpg', 'ftp://feed.example.com/x.jpg', 'http://feed.example.com/listing/1/photo-2.jpg'];
    const result = await images.imagesForSiBuild(urls, { country: 'UK', datasourceId: 16 });
    assert.deepEqual(
      result.map((r) => [r.hash, r.live, r.status]),
      [
        [liveHash, true, 'live'],
        [lis_hash_for_url(urls[1]), false, 'download'],
        [null, false, 'rejected'],
        [lis_hash_for_url(urls[3]), false, 'push'],
      ],
    );
    assert.match(result[2].error!, /not an http or https URL/);
    const rows = await t.db
      .selectFrom('live_images')
      .select(['image_url', sql<boolean>`last_seen > now() - interval '1 minute'`.as('fresh')])
      .orderBy('image_url')
      .execute();
    assert.deepEqual(
      rows.map((r) => r.fresh),
      [true, true, true],
    );
    assert.equal(rows.length, 3, 'the new photo was queued');
  });

  it('enqueue queues URLs for listing code and reports bad ones', async () => {
    const result = await images.enqueue(['http://a.example.com/1.jpg', 'http://a.example.com/1.jpg', liveUrl, 'not a url'], {
      country: 'uk',
      datasourceId: 16,
    });
    assert.deepEqual(result, { inserted: 1, refreshed: 1, rejected: [{ url: 'not a url', reason: 'URL contains white space' }] });
  });

  it('refuses wrong arguments from plain JavaScript as ERR_USAGE naming them, before the database sees them', async () => {
    // As untyped listing code would call it. Before: PostgreSQL's 22P02 for 'x' and NaN, a datasource -1 stored, TypeErrors.
    const js = images as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const refused = async (call: Promise<unknown>, message: RegExp) =>
      assert.rejects(call, (error: Error & { code?: string }) => error.code === 'ERR_USAGE' && message.test(error.message));
    for (const method of ['enqueue', 'imagesForSiBuild']) {
      for (const datasourceId of ['16', -1, 1.5, NaN, 2 ** 40, undefined])
        await refused(
          js[method](['http://d.example.com/1.jpg'], { country: 'uk', datasourceId }),
          new RegExp(`^ImageSys\\.${method}: datasourceId must be a whole number from 0 to 999999999, got `),
        );
      await refused(js[method](['http://d.example.com/1.jpg']), /options \{ country, datasourceId \} are required/);
      await refused(js[method]('http://d.example.com/1.jpg', { country: 'uk', datasourceId: 16 }), /must be an array, got string/);
      await refused(js[method](['http://d.example.com/1.jpg'], { country: 44, datasourceId: 16 }), /country must be a string such as 'uk', got 44/);
      // Named as the caller gave it: the Interface has no --country flag.
      await refused(
        js[method](['http://d.example.com/1.jpg'], { country: 'xxxx', datasourceId: 16 }),
        new RegExp(`^ImageSys\\.${method}: country "xxxx": expected a 2-3 letter country code such as uk$`),
      );
    }
    await refused(js.getSearchApiDataForHashes([liveHash], { country: 'u1' }), /^ImageSys\.getSearchApiDataForHashes: country "u1": expected a 2-3 letter/);
    await refused(js.getSearchApiDataForHashes(null), /hashes must be an array, got null/);
    await refused(js.getSearchApiDataForHashes([liveHash], { country: 5 }), /country must be a string/);
    // Named as the other wrong arguments are; before: no method named, and [hash] (a String() of a hash) answered null.
    for (const hash of [[liveHash], 5, null, undefined, liveHash.toUpperCase()])
      await refused(js.getSearchApiDataForHash(hash), /^ImageSys\.getSearchApiDataForHash: not an image hash \(32 lowercase hex digits\): /);
    await refused(js.getSearchApiDataForHashes([liveHash, [liveHash]]), /^ImageSys\.getSearchApiDataForHashes: not an image hash .*: \["[0-9a-f]{32}"\]$/);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE image_url LIKE 'http://d.example.com/%'`.execute(t.db);
    assert.equal(rows[0].n, 0, 'nothing was stored by a refused call');
  });

  it('open() refuses options that are not an object, and a config neither an object nor a file path, as ERR_USAGE', async () => {
    // Before: open(null) was a TypeError, { config: 5 } Node's ERR_INVALID_ARG_TYPE, and a bare path or '' opened the defaults.
    const open = (options: unknown) => ImageSys.open(options as OpenOptions);
    for (const [options, message] of [
      [null, /^ImageSys\.open: options must be an object such as \{ config: '\/etc\/imagesys\/config\.json' \}, got null$/],
      ['/etc/imagesys/config.json', /^ImageSys\.open: options must be an object .*, got "\/etc\/imagesys\/config\.json"$/],
      [{ config: 5 }, /^ImageSys\.open: config must be a config object or a config file's path, got 5$/],
      [{ config: null }, /config must be .*, got null$/],
      [{ config: '' }, /config must be .*, got ""$/],
    ] as const)
      await assert.rejects(open(options), (e: Error & { code?: string }) => e.code === 'ERR_USAGE' && message.test(e.message));
  });

  it('never shows the database password when listing code logs or serialises an ImageSys', () => {
    // Before: its config and pool were plain properties, database.url with the password in both.
    const password = decodeURIComponent(new URL(t.url).password);
    assert.ok(password.length > 0, 'the test database URL has a password');
    for (const shown of [inspect(images, { depth: 20, showHidden: true }), JSON.stringify(images), JSON.stringify({ ...images })])
      assert.ok(!shown.includes(password), shown.slice(0, 200));
  });

  it('refuses a call after close() as ERR_CLOSED, saying to open a new one', async () => {
    const closed = await ImageSys.open({ config: t.config });
    await closed.close();
    await closed.close(); // a second close does nothing
    const refused = (call: () => Promise<unknown>, method: string) =>
      assert.rejects(
        call,
        (error: Error & { code?: string }) => error.code === 'ERR_CLOSED' && error.message === `ImageSys.${method}: ImageSys is closed; open() a new one`,
      );
    await refused(() => closed.getSearchApiDataForHash(liveHash), 'getSearchApiDataForHash');
    await refused(() => closed.getSearchApiDataForHashes([liveHash]), 'getSearchApiDataForHashes');
    await refused(() => closed.imagesForSiBuild([liveUrl], { country: 'uk', datasourceId: 16 }), 'imagesForSiBuild');
    await refused(() => closed.enqueue([liveUrl], { country: 'uk', datasourceId: 16 }), 'enqueue');
    // Even a call that would not have needed the database: a closed ImageSys answers nothing.
    await refused(() => closed.enqueue([], { country: 'uk', datasourceId: 16 }), 'enqueue');
  });

  it('close() lets the calls in flight finish with their answers before it ends the connections', async () => {
    // Before: close() ended the pool at once, and the calls still waiting for one of its connections never settled.
    const closing = await ImageSys.open({ config: t.config });
    const listing = { country: 'uk', datasourceId: 16 };
    const calls = Array.from({ length: 20 }, (_, i) =>
      i % 3 === 0
        ? closing.getSearchApiDataForHashes([liveHash]).then((map) => map.get(liveHash)?.hash)
        : i % 3 === 1
          ? closing.imagesForSiBuild([liveUrl], listing).then((si) => si[0].status)
          : closing.enqueue([`http://g.example.com/${i}.jpg`], listing).then((r) => r.inserted),
    );
    const closed = closing.close();
    await assert.rejects(closing.getSearchApiDataForHash(liveHash), { code: 'ERR_CLOSED' });
    const answers = await within(Promise.all(calls), 'answer to the calls in flight', 5000);
    assert.deepEqual(
      answers,
      calls.map((_, i) => (i % 3 === 0 ? liveHash : i % 3 === 1 ? 'live' : 1)),
    );
    await within(Promise.all([closed, closing.close()]), 'close', 5000);
  });

  it("checks each URL as given, not as a line of lis enqueue's input: nothing trimmed, no comments, no DATASOURCE<TAB>", async () => {
    // Before: a trailing CR was let through and stored (a control character in image_url), '#...' was 'empty',
    // and '7<TAB>URL' reached the table as a URL. A non-string is rejected alone, like any bad URL.
    const urls = ['http://e.example.com/1.jpg\r', '#http://e.example.com/2.jpg', '7\thttp://e.example.com/3.jpg', '', null, 'http://e.example.com/4.jpg'];
    const result = await images.enqueue(urls as string[], { country: 'uk', datasourceId: 16 });
    assert.deepEqual(result, {
      inserted: 1,
      refreshed: 0,
      rejected: [
        { url: urls[0], reason: 'URL contains control characters' },
        { url: urls[1], reason: 'not an http or https URL (nor s3://bucket/key): "#http://e.example.com/2.jpg"' },
        { url: urls[2], reason: 'URL contains control characters' },
        { url: '', reason: 'empty URL' },
        { url: null, reason: 'not a string: null' },
      ],
    });
    const si = await images.imagesForSiBuild(urls as string[], { country: 'uk', datasourceId: 16 });
    assert.deepEqual(
      si.map((r) => [r.status, r.hash]),
      [...urls.slice(0, 5).map(() => ['rejected', null]), ['download', lis_hash_for_url(urls[5]!)]],
    );
    const { rows } = await sql<{ image_url: string }>`SELECT image_url FROM live_images WHERE image_url LIKE '%e.example.com%'`.execute(t.db);
    assert.deepEqual(
      rows.map((r) => r.image_url),
      [urls[5]],
    );
  });

  it('a URL the table refuses is rejected alone, never thrown for the whole listing', async () => {
    await sql`ALTER TABLE live_images ADD CONSTRAINT test_no_blocked CHECK (image_url NOT LIKE '%/blocked/%')`.execute(t.db);
    const urls = ['HTTP://b.example.com/1.jpg', 'http://b.example.com/blocked/2.jpg', 'http://b.example.com/3.jpg'];
    const result = await images.enqueue(urls, { country: 'uk', datasourceId: 16 });
    assert.equal(result.inserted, 2);
    assert.deepEqual(
      result.rejected.map((r) => r.url),
      [urls[1]],
    );
    assert.match(result.rejected[0].reason, /refused by the table: .*test_no_blocked/);
    const listing = [liveUrl, 'http://c.example.com/blocked/9.jpg', 'HTTPS://c.example.com/8.jpg'];
    const si = await images.imagesForSiBuild(listing, { country: 'uk', datasourceId: 16 });
    assert.deepEqual(
      si.map((r) => [r.url, r.status, r.live]),
      [
        [liveUrl, 'live', true],
        [listing[1], 'rejected', false],
        [listing[2], 'download', false],
      ],
    );
    assert.match(si[1].error!, /test_no_blocked/);
    assert.equal(si[2].hash, lis_hash_for_url(listing[2]));
  });
  it('8 calls at once with overlapping URLs in different orders neither deadlock nor store a URL twice', async () => {
    // Without one lock order, INSERT ... ON CONFLICT statements meeting the same rows in different orders deadlock (40P01).
    const pool = Array.from({ length: 2000 }, (_, i) => `http://d.example.com/${i}.jpg`);
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const shuffled = () =>
      pool
        .map((u) => [random(), u] as const)
        .sort((a, b) => a[0] - b[0])
        .map(([, u]) => u)
        .slice(0, 1500);
    const counted = async () =>
      Number((await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE image_url LIKE 'http://d.example.com/%'`.execute(t.db)).rows[0].n);
    const results = await Promise.all(Array.from({ length: 8 }, () => images.enqueue(shuffled(), { country: 'uk', datasourceId: 16 })));
    const stored = await counted();
    assert.equal(
      results.reduce((sum, r) => sum + r.inserted, 0),
      stored,
      'each URL counted as inserted once',
    );
    assert.ok(results.every((r) => r.inserted + r.refreshed === 1500));
    const si = await Promise.all(Array.from({ length: 8 }, () => images.imagesForSiBuild(shuffled(), { country: 'uk', datasourceId: 16 })));
    assert.ok(si.every((listing) => listing.length === 1500 && listing.every((r) => r.status === 'download')));
    assert.ok((await counted()) <= pool.length);
  });
  it('a call while the server is away fails as ERR_DATABASE, and the next one once it is back works', async () => {
    // A TCP proxy stands in for the server, so that "stopped" and "started again" do not touch the shared one.
    const proxy = await startDatabaseProxy(t.url);
    const { port } = proxy;
    const viaProxy = await ImageSys.open({ config: { ...t.config, database: { ...t.config.database, url: proxy.url } } });
    try {
      await Promise.all([viaProxy.getSearchApiDataForHashes([liveHash]), viaProxy.imagesForSiBuild([liveUrl], { country: 'uk', datasourceId: 16 })]);
      await proxy.cut();
      // enqueue too (it retries first): an unreachable server is not an incomplete batch (before: ERR_ENQUEUE_INCOMPLETE).
      for (const call of [
        () => viaProxy.getSearchApiDataForHashes([liveHash]),
        () => viaProxy.imagesForSiBuild([liveUrl], { country: 'uk', datasourceId: 16 }),
        () => viaProxy.enqueue([liveUrl], { country: 'uk', datasourceId: 16 }),
      ])
        await assert.rejects(
          call(),
          (e: Error & { code?: string }) =>
            e.code === 'ERR_DATABASE' && new RegExp(`ImageSys\\.\\w+: the database at .*:${port}\\b.* cannot be reached`).test(e.message),
        );
      await proxy.restore();
      assert.equal((await viaProxy.getSearchApiDataForHash(liveHash))?.hash, liveHash);
      assert.equal((await viaProxy.imagesForSiBuild([liveUrl], { country: 'uk', datasourceId: 16 }))[0].status, 'live');
      assert.deepEqual(await viaProxy.enqueue([liveUrl], { country: 'uk', datasourceId: 16 }), { inserted: 0, refreshed: 1, rejected: [] });
    } finally {
      await viaProxy.close();
      await proxy.cut();
    }
  });
  it('rejects a URL with a lone surrogate, which PostgreSQL would store as another URL (U+FFFD)', async () => {
    const lone = 'http://e.example.com/a\uD83D.jpg';
    const pair = 'http://e.example.com/\uD83D\uDE00.jpg';
    const reason = 'URL is not well-formed Unicode (a lone surrogate)';
    assert.deepEqual(await images.enqueue([lone, pair], { country: 'uk', datasourceId: 16 }), { inserted: 1, refreshed: 0, rejected: [{ url: lone, reason }] });
    const si = await images.imagesForSiBuild([lone, pair], { country: 'uk', datasourceId: 16 });
    assert.deepEqual(
      si.map((r) => [r.status, r.hash, r.error]),
      [
        ['rejected', null, reason],
        ['download', lis_hash_for_url(pair), undefined],
      ],
    );
    const { rows } = await sql<{ image_hash: string }>`SELECT image_hash FROM live_images WHERE image_url LIKE 'http://e.example.com/%'`.execute(t.db);
    assert.deepEqual(rows, [{ image_hash: lis_hash_for_url(pair) }], 'the emoji URL is stored as given, hashed alike by JS and md5(image_url)');
  });
  it('imagesForSiBuild says "parked" for a new URL of a disabled datasource from the first call, as the table parks it', async () => {
    await sql`INSERT INTO datasources (country, datasource_id, enabled) VALUES ('uk', 17, false)`.execute(t.db);
    const urls = ['http://f.example.com/1.jpg'];
    for (let call = 1; call <= 2; call++)
      assert.deepEqual(
        (await images.imagesForSiBuild(urls, { country: 'uk', datasourceId: 17 })).map((r) => r.status),
        ['parked'],
        `call ${call}`,
      );
    assert.deepEqual(
      (await images.imagesForSiBuild(['http://f.example.com/2.jpg'], { country: 'uk', datasourceId: 16 })).map((r) => r.status),
      ['download'],
    );
  });
});
