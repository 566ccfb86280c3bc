// lis_thumbnaild against a real PostgreSQL: the spawned daemon, the CLI, the classes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { sql } from 'kysely';
import type { ImageData } from '../src/store/image-data.ts';
import { thumbnailStorePath } from '../src/store/store-layout.ts';
import { storedDetails } from '../src/thumbnail/process-details.ts';
import { gammaRgbProfile, pngWithProfile } from './helpers/icc-profile.ts';
import { countBy } from './helpers/rows.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { runByHand } from './helpers/run-by-hand.ts';
import { closeLogger } from '../src/log/create-logger.ts';
import { disableDatasource } from '../src/manager/datasource-switch.ts';
import { createThumbnailWorker } from '../src/thumbnail/thumbnail-worker.ts';
import {
  EXIF_DIR,
  flatJpeg,
  insertThumbnailRows,
  logoPng,
  nearBlankPng,
  pixelBombPng,
  PNGSUITE_DIR,
  rowsByUrl,
  runThumbnailStage,
} from './helpers/thumbnail-fixtures.ts';

const photo = (name: string) => fs.readFileSync(path.join(EXIF_DIR, `${name}.jpg`));

describe('lis_thumbnaild (real daemon, real PostgreSQL)', () => {
  let t: TestDatabase;
  afterEach(async () => t.drop());

  it('a run by hand thumbnails the waiting rows, records image_data, writes the files and moves the rows to push', async () => {
    t = await createTestDatabase();
    await insertThumbnailRows(t.db, t.config, 'uk', [
      { url: 'http://a.example/landscape.jpg', datasourceId: 16, original: photo('Landscape_3') },
      { url: 'http://a.example/portrait.jpg', datasourceId: 16, original: photo('Portrait_6') },
      { url: 'http://a.example/palette.png', datasourceId: 16, original: fs.readFileSync(path.join(PNGSUITE_DIR, 'basn3p08.png')) },
      { url: 'http://a.example/corrupt.png', datasourceId: 16, original: fs.readFileSync(path.join(PNGSUITE_DIR, 'xc1n0g08.png')) },
      { url: 'http://a.example/bomb.png', datasourceId: 16, original: pixelBombPng(50000, 50000) },
      { url: 'http://a.example/lost.jpg', datasourceId: 16 },
    ]);
    const config = t.writeConfig({ thumbnail: { twins: { webp: true } } });
    // LIS_DATABASE_URL wins over a config file: the children must get this test's database, not an exported one.
    const env = { LIS_DATABASE_URL: t.url };

    const set = spawnTs('bin/lis', ['--config', config, 'datasource', 'set', 'uk', '16', '--sharpen', '0x1', '--gamma', '1.0', '--quality', '90'], env);
    assert.equal((await set.exited).code, 0, set.output());
    assert.match(set.output(), /uk 16: sharpen 0x1, gamma 1, quality 90/);
    assert.match(
      set.output(),
      /^images thumbnailed before, or being thumbnailed now, keep the settings they were made with until `lis rethumbnail --country uk --datasource 16 --stale` makes them again/m,
    );
    const bad = spawnTs('bin/lis', ['--config', config, 'datasource', 'set', 'uk', '16', '--sharpen', '1y2'], env);
    // The country is an argument here, not a flag: the error named a --country the command does not have.
    const badCountry = spawnTs('bin/lis', ['--config', config, 'datasource', 'show', 'u-k'], env);
    assert.equal((await bad.exited).code, 2);
    assert.match(bad.output(), /--sharpen "1y2": expected RADIUSxSIGMA such as 0x1/);
    assert.equal((await badCountry.exited).code, 2, badCountry.output());
    assert.match(badCountry.output(), /^error: country "u-k": expected a 2-3 letter country code such as uk$/m);
    const show = spawnTs('bin/lis', ['--config', config, 'datasource', 'show', 'uk', '16'], env);
    assert.equal((await show.exited).code, 0, show.output());
    assert.match(show.output(), /uk 16: sharpen 0x1, gamma 1, quality 90$/m);

    const run = spawnTs('bin/lis_thumbnaild', ['--country', 'uk', '--config', config, '--verbose'], env);
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.match(run.output(), /Exiting\(time_to_die: 0\)/);
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 3, 'thumbnail/failed': 2, 'thumbnail/waiting': 1 });

    const rows = await rowsByUrl(t.db);
    const corrupt = rows.get('http://a.example/corrupt.png')!;
    assert.equal(corrupt.last_error_class, 'corrupt_image');
    assert.match(corrupt.last_error!, /colour type 1 is not valid/);
    assert.equal(rows.get('http://a.example/bomb.png')!.last_error_class, 'too_many_pixels');
    const lost = rows.get('http://a.example/lost.jpg')!;
    assert.equal(lost.last_error_class, 'original_missing');
    assert.equal(lost.attempts, 0, 'our fault (the store lost it): given back uncharged; the manager sends it back to download');

    const landscape = rows.get('http://a.example/landscape.jpg')!;
    const data = landscape.image_data as unknown as ImageData;
    assert.deepEqual(data.original, { width: 1800, height: 1200, format: 'jpeg', bytes: photo('Landscape_3').length });
    assert.match(data.contentHash, /^[0-9a-f]{64}$/);
    assert.match(data.dominantColor!, /^#[0-9a-f]{6}$/);
    assert.equal(data.placeholder!.type, 'thumbhash');
    assert.ok(Buffer.from(data.placeholder!.data, 'base64').length > 10);
    assert.equal(landscape.image_class, 'photo');
    assert.equal(landscape.perceptual_hash, data.perceptualHash);
    assert.deepEqual(Object.keys(data.presets).sort(), ['large', 'medium', 'small']);
    const expected = { small: [120, 90], medium: [320, 240], large: [640, 427] } as Record<string, number[]>;
    for (const [name, preset] of Object.entries(data.presets)) {
      assert.match(preset.path, new RegExp(`^uk/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}_${name}\\.jpg$`));
      const file = fs.readFileSync(thumbnailStorePath(t.config, preset.path));
      assert.equal(file.length, preset.bytes);
      const meta = await sharp(file).metadata();
      assert.deepEqual([meta.width, meta.height], expected[name]);
      assert.deepEqual([preset.width, preset.height], expected[name]);
      // Progressive above the small box (src/thumbnail/jpeg-options.ts), baseline at or below it.
      assert.equal(meta.isProgressive, name !== 'small', `${name}: progressive or baseline by its box`);
      const webp = preset.twins!.webp;
      assert.equal(webp.path, preset.path.replace(/\.jpg$/, '.webp'));
      assert.equal(fs.statSync(thumbnailStorePath(t.config, webp.path)).size, webp.bytes);
    }
    const thumbs = fs
      .readdirSync(t.config.stores.thumbnails, { recursive: true })
      .map(String)
      .filter((f) => /\.(jpg|webp)$/.test(f));
    assert.equal(thumbs.length, 3 * 3 * 2, 'files only for the rows that succeeded, no temp files left');
  });

  it('a real run stores files with no metadata (a GPS-tagged photo) and the right colours (a 16-bit PNG with a profile)', async () => {
    t = await createTestDatabase();
    const gpsTagged = await sharp(photo('Landscape_6'))
      .withExif({ IFD0: { Make: 'SecretCam' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1' } })
      .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/">SecretXmp</x:xmpmeta>')
      .jpeg()
      .toBuffer();
    // Linear light in its profile: (200, 100, 50) is 229,168,122 in sRGB.
    const samples = Uint16Array.from({ length: 400 * 300 * 3 }, (_, i) => [200, 100, 50][i % 3] * 257);
    const profiled16 = pngWithProfile(
      await sharp(samples, { raw: { width: 400, height: 300, channels: 3 } })
        .toColourspace('rgb16')
        .png()
        .toBuffer(),
      gammaRgbProfile(1),
    );
    await insertThumbnailRows(t.db, t.config, 'uk', [
      { url: 'http://a.example/gps.jpg', original: gpsTagged },
      { url: 'http://a.example/deep.png', original: profiled16 },
    ]);
    const config = t.writeConfig({ thumbnail: { twins: { webp: true, avif: true } } });
    const run = spawnTs('bin/lis_thumbnaild', ['--country', 'uk', '--config', config], { LIS_DATABASE_URL: t.url });
    assert.equal((await run.exited).code, 0, run.output());
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 2 });
    const rows = await rowsByUrl(t.db);
    const filesOf = (url: string) =>
      Object.values((rows.get(url)!.image_data as unknown as ImageData).presets).flatMap((p) => [p.path, ...Object.values(p.twins ?? {}).map((tw) => tw.path)]);
    for (const file of [...filesOf('http://a.example/gps.jpg'), ...filesOf('http://a.example/deep.png')]) {
      const bytes = fs.readFileSync(thumbnailStorePath(t.config, file));
      const meta = await sharp(bytes).metadata();
      assert.deepEqual([meta.exif, meta.xmp, meta.icc], [undefined, undefined, undefined], file);
      assert.ok(!/Secret|GPS|Exif/.test(bytes.toString('latin1')), `${file}: metadata in the bytes`);
    }
    for (const file of filesOf('http://a.example/deep.png')) {
      const { data } = await sharp(fs.readFileSync(thumbnailStorePath(t.config, file)))
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      const got = [...data.subarray(0, 3)];
      [229, 168, 122].forEach((level, c) => assert.ok(Math.abs(got[c] - level) <= 3, `${file}: got ${got.join(',')}`));
    }
  });

  it("classifies: photo, tiny, placeholder, duplicate across listings of one datasource; a person's class stays", async () => {
    t = await createTestDatabase({ overrides: { queue: { chunkSize: 4 }, thumbnail: { classes: { duplicateMinListings: 3 } } } });
    const logo = await logoPng();
    const specs = [
      { url: 'http://a.example/photo.jpg', original: photo('Landscape_1') },
      { url: 'http://a.example/tiny.jpg', original: await sharp(photo('Landscape_1')).resize(150, 100).jpeg().toBuffer() },
      { url: 'http://a.example/flat.jpg', original: await flatJpeg(800, 600) },
      { url: 'http://a.example/blank.png', original: await nearBlankPng() },
      // The same logo on listings of datasource 7, once re-encoded at another size: 4 rows, over two chunks.
      ...[1, 2, 3].map((n) => ({ url: `http://a.example/logo${n}.png`, datasourceId: 7, original: logo })),
      { url: 'http://a.example/logo4.jpg', datasourceId: 7, original: await sharp(logo).resize(450).jpeg({ quality: 85 }).toBuffer() },
      // Twice in another datasource: below the threshold there.
      ...[1, 2].map((n) => ({ url: `http://b.example/logo${n}.png`, datasourceId: 8, original: logo })),
      // People said otherwise: a flat picture they call a photo, a photo they call a placeholder.
      { url: 'http://a.example/person-photo.jpg', original: await flatJpeg(800, 600, { r: 10, g: 90, b: 10 }), humanClassified: true, imageClass: 'photo' },
      { url: 'http://a.example/person-placeholder.jpg', original: photo('Portrait_1'), humanClassified: true, imageClass: 'placeholder' },
    ];
    await insertThumbnailRows(
      t.db,
      t.config,
      'uk',
      specs.map((s) => ({ datasourceId: 1, ...s })),
    );
    const totals = await runThumbnailStage(t.db, t.config, t.url);
    assert.equal(totals.done, specs.length);

    const classes = Object.fromEntries([...(await rowsByUrl(t.db))].map(([url, r]) => [url.replace(/^http:\/\//, ''), r.image_class]));
    assert.deepEqual(classes, {
      'a.example/photo.jpg': 'photo',
      'a.example/tiny.jpg': 'tiny',
      'a.example/flat.jpg': 'placeholder',
      'a.example/blank.png': 'placeholder',
      'a.example/logo1.png': 'duplicate',
      'a.example/logo2.png': 'duplicate',
      'a.example/logo3.png': 'duplicate',
      'a.example/logo4.jpg': 'duplicate',
      'b.example/logo1.png': 'photo',
      'b.example/logo2.png': 'photo',
      'a.example/person-photo.jpg': 'photo',
      'a.example/person-placeholder.jpg': 'placeholder',
    });
    const people = await t.db.selectFrom('live_images').select(['image_data', 'stage']).where('human_classified', '=', true).execute();
    assert.ok(
      people.every((p) => p.stage === 'push' && p.image_data),
      "a person's rows are thumbnailed all the same",
    );
  });

  it('a gamma written straight into the table outside 0.1-10 (0, negative, NaN, 11) gives its rows back as bad_process_details, uncharged, with no thumbnail made; lis datasource show marks it INVALID', async () => {
    t = await createTestDatabase();
    const gammas = { 21: '0', 22: '-1', 23: 'NaN', 24: '11', 25: '0.1', 26: '10' } as Record<number, string>;
    for (const [id, gamma] of Object.entries(gammas)) {
      await sql`INSERT INTO datasources (country, datasource_id, gamma) VALUES ('uk', ${Number(id)}, ${gamma}::real)`.execute(t.db);
    }
    await insertThumbnailRows(
      t.db,
      t.config,
      'uk',
      Object.keys(gammas).map((id) => ({ url: `http://a.example/${id}.jpg`, datasourceId: Number(id), original: photo('Landscape_1') })),
    );
    await runThumbnailStage(t.db, t.config, t.url);
    const rows = await rowsByUrl(t.db);
    for (const [id, gamma] of Object.entries(gammas)) {
      const row = rows.get(`http://a.example/${id}.jpg`)!;
      if (gamma === '0.1' || gamma === '10') {
        assert.equal(row.stage, 'push', `gamma ${gamma} is within the range: ${row.last_error}`);
        continue;
      }
      assert.equal(row.last_error_class, 'bad_process_details', `gamma ${gamma}: ${row.stage} ${row.last_error}`);
      assert.match(row.last_error!, new RegExp(`datasource ${id}: gamma ${gamma}: expected a number from 0.1 to 10`));
      assert.equal(row.attempts, 0, 'our fault (a bad setting), not the image');
      assert.equal(row.image_data, null);
    }
    // The operator looks: every datasource is listed, the bad ones marked with what is wrong. The command died at the
    // first (exit 2, "error: gamma 0: ..." naming none), and `set` of another flag said so too, its change written.
    const config = t.writeConfig();
    const show = spawnTs('bin/lis', ['--config', config, 'datasource', 'show', 'uk'], { LIS_DATABASE_URL: t.url });
    assert.equal((await show.exited).code, 0, show.output());
    for (const [id, gamma] of Object.entries(gammas)) {
      const line = new RegExp(`^uk ${id}: sharpen 0x0\\.5 \\(default\\), gamma ${gamma === 'NaN' ? 'NaN' : Number(gamma)}, quality 82 \\(default\\)$`, 'm');
      assert.match(show.output(), line);
    }
    assert.equal(show.output().match(/^ {2}INVALID: gamma .*: expected a number from 0\.1 to 10; its images are not thumbnailed/gm)?.length, 4, show.output());
    const set = spawnTs('bin/lis', ['--config', config, 'datasource', 'set', 'uk', '21', '--quality', '90'], { LIS_DATABASE_URL: t.url });
    assert.equal((await set.exited).code, 0, set.output());
    assert.match(set.output(), /^uk 21: sharpen 0x0\.5 \(default\), gamma 0, quality 90\n {2}INVALID: gamma 0: /m);
  });

  it('a row the database fails us on (its process details unreadable) waits queue.oursRetrySeconds as ours, uncharged: a run by hand ends', async () => {
    t = await createTestDatabase();
    await insertThumbnailRows(t.db, t.config, 'uk', [
      { url: 'http://a.example/one.jpg', datasourceId: 16, original: photo('Landscape_1') },
      { url: 'http://a.example/two.jpg', datasourceId: 16, original: photo('Portrait_5') },
    ]);
    // The read fails with the server's own error (no such function), as a broken or unreachable database would.
    await sql`ALTER FUNCTION lis_datasource_process_details(text, integer) RENAME TO lis_datasource_process_details_gone`.execute(t.db);
    const before = Date.now();
    const run = spawnTs('bin/lis_thumbnaild', ['--country', 'uk', '--config', t.writeConfig()], { LIS_DATABASE_URL: t.url });
    let exited: { code: number | null } | null = null;
    void run.exited.then((e) => (exited = e));
    try {
      // Left unreported, the rows went back at once and were claimed and failed again: the run never ended.
      await waitFor(() => exited !== null, 30_000, 'the run by hand to end by itself');
    } finally {
      if (exited === null) run.child.kill('SIGKILL');
      await run.exited;
    }
    assert.equal(exited!.code, 0, run.output());
    const rows = [...(await rowsByUrl(t.db)).values()];
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.stage, 'thumbnail');
      assert.equal(row.state, 'waiting');
      assert.equal(row.attempts, 0, 'our fault, not the image');
      assert.equal(row.last_error_class, 'database');
      assert.match(row.last_error!, /^datasource 16: cannot read its process details: function lis_datasource_process_details\(/);
      assert.ok(row.next_attempt_at.getTime() >= before + (t.config.queue.oursRetrySeconds - 1) * 1000, 'waits oursRetrySeconds');
    }
    assert.match(run.output(), /No rows gained\. No work to do\. 2 rows wait for a retry .*\(database: datasource 16: cannot read its process details/);
  });

  it('a run by hand with a datasource disabled names it as it ends: its rows are parked, not waiting, and how to put them back', async () => {
    t = await createTestDatabase();
    await insertThumbnailRows(t.db, t.config, 'uk', [
      { url: 'http://a.example/parked.jpg', datasourceId: 16, original: await flatJpeg(64, 48) },
      { url: 'http://a.example/worked.jpg', datasourceId: 17, original: await flatJpeg(64, 48) },
    ]);
    await disableDatasource(t.db, 'uk', 16, 'by hand: feed broken (ticket 42)');
    const { log, lines } = capturedLogger('thumbnaild', t.config.log);
    try {
      await runByHand(createThumbnailWorker({ config: t.config, db: t.db }), t, log);
    } finally {
      await closeLogger(log);
    }
    assert.deepEqual(await countBy(t.db), { 'thumbnail/parked': 1, 'push/waiting': 1 });
    // Before, only "No rows gained. No work to do.", while the datasource's rows sat parked, unmentioned.
    assert.ok(
      lines.includes(
        'WARN No rows gained. No work to do. Datasource 16 (by hand: feed broken (ticket 42)) of uk is disabled: its rows are parked, not waiting; lis datasource enable uk 16 puts them back.',
      ),
      lines.join('\n'),
    );
  });

  it("lis_datasource_process_details gives a datasource's own settings, NULLs for what it leaves to the config", async () => {
    t = await createTestDatabase();
    assert.deepEqual(await storedDetails(t.db, 'uk', 99), { sharpen: null, gamma: null, quality: null });
    await sql`INSERT INTO datasources (country, datasource_id, quality) VALUES ('uk', 16, 70)`.execute(t.db);
    assert.deepEqual(await storedDetails(t.db, 'uk', 16), { sharpen: null, gamma: null, quality: 70 });
    const { rows } = await sql<{ enabled: boolean }>`SELECT enabled FROM lis_datasource_process_details('uk', 16)`.execute(t.db);
    assert.equal(rows[0].enabled, true);
  });
});
