// Admission by decoded pixels: the bookkeeping alone, then real decodes through it and through the worker.
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { thumbnailConfigSchema } from '../src/config/thumbnail-config.ts';
import { makeThumbnails, type ThumbnailSettings } from '../src/thumbnail/make-thumbnails.ts';
import { decodeCost, PixelBudget } from '../src/thumbnail/pixel-budget.ts';
import { resolveDetails } from '../src/thumbnail/process-details.ts';
import { countBy } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { insertThumbnailRows, runThumbnailStage } from './helpers/thumbnail-fixtures.ts';

/** Lets every settled promise callback run (admissions resolve through microtasks). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('pixel budget (pure)', () => {
  it('admits while the pixels fit, then holds the rest back until pixels are released', async () => {
    const budget = new PixelBudget(100);
    const order: string[] = [];
    const a = await budget.acquire(60);
    const b = await budget.acquire(40);
    assert.equal(budget.held, 100);
    const c = budget.acquire(30).then((release) => (order.push('c'), release));
    await settle();
    assert.deepEqual(order, [], 'no room: c waits');
    assert.equal(budget.queued, 1);
    b();
    await settle();
    assert.deepEqual(order, ['c'], 'released 40: c (30) fits');
    assert.equal(budget.held, 90);
    a();
    (await c)();
    assert.equal(budget.held, 0);
  });

  it('runs an image bigger than the whole budget alone: serialised, never refused', async () => {
    const budget = new PixelBudget(100);
    const small = await budget.acquire(10);
    const events: string[] = [];
    const big = budget.acquire(500).then((release) => (events.push('big'), release));
    const after = budget.acquire(10).then((release) => (events.push('after'), release));
    await settle();
    assert.deepEqual(events, [], 'the big one waits for the running one; the next waits behind it (in order)');
    small();
    await settle();
    assert.deepEqual(events, ['big']);
    assert.equal(budget.held, 500);
    (await big)();
    await settle();
    assert.deepEqual(events, ['big', 'after']);
    (await after)();
    assert.equal(budget.held, 0);
  });

  it('serves waiters in order, so small images do not starve a big one', async () => {
    const budget = new PixelBudget(100);
    const first = await budget.acquire(50);
    const events: string[] = [];
    const big = budget.acquire(80).then((r) => (events.push('big'), r));
    const small = budget.acquire(10).then((r) => (events.push('small'), r));
    await settle();
    assert.deepEqual(events, [], 'small (10) would fit, but the big one is first in line');
    first();
    await settle();
    assert.deepEqual(events, ['big', 'small'], '80 + 10 fit together once the 50 is back');
    (await big)();
    (await small)();
  });

  it('a release counts once', async () => {
    const budget = new PixelBudget(100);
    const a = await budget.acquire(70);
    await budget.acquire(30);
    a();
    a();
    assert.equal(budget.held, 30);
  });

  it('refuses a budget that admits nothing', () => {
    assert.throws(() => new PixelBudget(0), RangeError);
  });

  it('counts a JPEG after its shrink on load, other formats whole, plus the working picture', () => {
    const target = { width: 640, height: 427 };
    // 1800x1200 -> 900x600 at 1/2 (1/4 would be 450x300, under the target).
    assert.equal(decodeCost({ format: 'jpeg', width: 1800, height: 1200 }, target), 900 * 600 + 640 * 427);
    assert.equal(decodeCost({ format: 'jpeg', width: 6000, height: 4000 }, target), 750 * 500 + 640 * 427);
    assert.equal(decodeCost({ format: 'png', width: 7000, height: 7000 }, { width: 640, height: 640 }), 49_000_000 + 640 * 640);
    assert.equal(decodeCost({ format: 'jpeg', width: 700, height: 500 }, { width: 700, height: 500 }), 2 * 700 * 500);
  });

  it('is a config key with a default, and refuses a budget of nothing', () => {
    assert.equal(thumbnailConfigSchema.parse({}).pixelBudget, 25_000_000);
    assert.equal(thumbnailConfigSchema.parse({ pixelBudget: 1000 }).pixelBudget, 1000);
    assert.throws(() => thumbnailConfigSchema.parse({ pixelBudget: 0 }));
  });
});

/** Interlaced PNGs of `side` x `side` pixels, each a different gradient. */
async function bigPngs(count: number, side: number): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      sharp({ create: { width: side, height: side, channels: 3, background: { r: 40 * i, g: 120, b: 200 - 30 * i } } })
        .composite([
          { input: Buffer.from(`<svg width="${side}" height="${side}"><circle cx="${side / 2}" cy="${side / 2}" r="${side / (3 + i)}" fill="#fff"/></svg>`) },
        ])
        .png({ progressive: true, compressionLevel: 1 })
        .toBuffer(),
    ),
  );
}

describe('pixel budget (real decodes)', () => {
  it('makeThumbnails decodes a mix too big for the budget one at a time, and makes every one', async () => {
    const config = thumbnailConfigSchema.parse({});
    const settings: ThumbnailSettings = {
      presets: config.presets,
      twins: config.twins,
      maxPixels: config.maxPixels,
      timeoutSeconds: 60,
      failOn: config.failOn,
      details: resolveDetails({ sharpen: null, gamma: null, quality: null }, config.defaults),
    };
    const pngs = await bigPngs(4, 1500);
    assert.equal((await sharp(pngs[0]).metadata()).isProgressive, true, 'interlaced: decoded whole');
    const budget = new PixelBudget(1_000_000); // under one 1500x1500 (2.25 megapixels)
    let decoding = 0;
    let most = 0;
    const asked: number[] = [];
    const admit = async (pixels: number) => {
      asked.push(pixels);
      const release = await budget.acquire(pixels);
      most = Math.max(most, ++decoding);
      return () => (decoding--, release());
    };
    const made = await Promise.all(pngs.map((png) => makeThumbnails(png, settings, admit)));
    assert.equal(made.length, 4);
    for (const m of made) assert.deepEqual([m.presets.large.width, m.presets.large.height], [480, 480]);
    assert.deepEqual(asked, Array(4).fill(1500 * 1500 + 480 * 480), 'each asked for its whole decode, judged from the header');
    assert.equal(most, 1, 'never two decodes at once');
    assert.equal(budget.held, 0, 'every pixel given back');
  });

  describe("through lis_thumbnaild's worker", () => {
    let t: TestDatabase;
    afterEach(async () => t.drop());

    it('a budget smaller than every image still thumbnails them all (none refused)', async () => {
      t = await createTestDatabase();
      const pngs = await bigPngs(3, 1200);
      await insertThumbnailRows(
        t.db,
        t.config,
        'uk',
        pngs.map((original, i) => ({ url: `http://a.example/big${i}.png`, original })),
      );
      const config = { ...t.config, thumbnail: { ...t.config.thumbnail, pixelBudget: 1000 } };
      const totals = await runThumbnailStage(t.db, config, t.url);
      assert.equal(totals.done, 3);
      assert.deepEqual(await countBy(t.db), { 'push/waiting': 3 });
    });
  });
});
