// `lis image classify` (a human's word) and `lis rethumbnail`, run as the real CLI.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { enqueueRows } from '../src/queue/enqueue-rows.ts';
import { finishRows } from '../src/queue/finish-rows.ts';
import { insertOriginRow } from '../src/queue/origin-rows.ts';
import { lis_hash_for_url } from '../src/hash/image-hash.ts';
import { lookupImage } from '../src/web/lookup-image.ts';
import { spawnTs } from './helpers/processes.ts';
import { countBy, insertUrls, relistAll } from './helpers/rows.ts';
import { flatJpeg, insertThumbnailRows, runThumbnailStage } from './helpers/thumbnail-fixtures.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('lis image classify and lis rethumbnail', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  // The presets of the rework test: `huge` added to the config after images went live with `small` only.
  const presets = { small: { width: 120, height: 90, mode: 'crop' as const }, huge: { width: 2000, height: 1500, mode: 'resize' as const } };
  const lis = async (...args: string[]) => {
    const run = spawnTs('bin/lis', ['--config', t.writeConfig({ thumbnail: { presets } }), ...args]);
    const { code } = await run.exited;
    return { code, output: run.output() };
  };

  it('the lookup tells a row made by a request to lis_imaged from one the ETL queued, until a listing names it', async () => {
    const url = 's3://photos/uk/a.jpg';
    assert.ok(await insertOriginRow(t.db, 'uk', 1, url));
    const hash = lis_hash_for_url(url);
    const history = async () => (await lookupImage(t.db, hash))[0].history.map((h) => h.what);
    assert.deepEqual(await history(), ['queued by a request to lis_imaged (an origin key)', 'now download/waiting (attempts 0)']);
    await enqueueRows(t.db, 'uk', [{ datasourceId: 1, url }]);
    const after = await history();
    assert.equal(after[0], 'queued by the ETL');
    assert.ok(after.includes('last seen by the ETL'), after.join('; '));
  });

  it("a person's class is kept by the thumbnailer, shown by the lookup, and handed back with --auto", async () => {
    await insertUrls(t.db, 'uk', 1);
    const { image_hash: hash } = await t.db.selectFrom('live_images').select('image_hash').executeTakeFirstOrThrow();
    const set = await lis('image', 'classify', hash, '--country', 'uk', '--class', 'tiny');
    assert.equal(set.code, 0, set.output);
    assert.match(set.output, /class tiny, set by hand/);
    const [found] = await lookupImage(t.db, hash);
    assert.equal(found.row.image_class, 'tiny');
    assert.equal(found.row.classified_by, 'a person (lis image classify)');

    // The stages run on; the thumbnailer's own class does not replace the person's.
    await sql`UPDATE live_images SET stage = 'thumbnail'`.execute(t.db);
    await relistAll(t.db);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'thumbnail', workerId: 'w', storeHost: '', limit: 1, afterId: '0' });
    assert.equal(
      await finishRows(
        t.db,
        'w',
        'thumbnail',
        rows.map((r) => ({ id: r.id, set: { image_class: 'photo' } })),
      ),
      1,
    );
    assert.equal((await lookupImage(t.db, hash))[0].row.image_class, 'tiny');

    const auto = await lis('image', 'classify', hash, '--country', 'uk', '--auto');
    assert.equal(auto.code, 0, auto.output);
    const [after] = await lookupImage(t.db, hash);
    assert.equal(after.row.classified_by, 'automatic');
    assert.equal(after.row.human_classified, false);

    assert.equal((await lis('image', 'classify', hash, '--country', 'uk', '--class', 'cat')).code, 2, 'an unknown class is a usage error');
    assert.equal((await lis('image', 'classify', hash, '--country', 'uk')).code, 2, 'one of --class and --auto is needed');
    const unknown = await lis('image', 'classify', 'f'.repeat(32), '--country', 'uk', '--class', 'photo');
    assert.equal(unknown.code, 1);
    assert.match(unknown.output, /no image f{32} in uk/);
  });

  it('lis rethumbnail queues live images again (those lacking a preset with --preset) and they stay live', async () => {
    await insertUrls(t.db, 'uk', 4);
    await sql`UPDATE live_images SET stage = 'live', state = 'done', image_data = '{"presets":{"small":{"path":"x"}}}', live_data = '{"presets":{"small":{"path":"x"}}}'`.execute(
      t.db,
    );
    await sql`UPDATE live_images SET image_data = '{"presets":{"small":{"path":"x"},"huge":{"path":"y"}}}' WHERE id % 2 = 0`.execute(t.db);
    await relistAll(t.db);
    const some = await lis('rethumbnail', '--country', 'uk', '--preset', 'huge');
    assert.equal(some.code, 0, some.output);
    assert.match(some.output, /^2 images queued/m);
    assert.deepEqual(await countBy(t.db), { 'live/done': 2, 'thumbnail/waiting': 2 });
    const all = await lis('rethumbnail');
    assert.match(all.output, /^2 images queued/m, 'every country; the rest');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE live_data IS NOT NULL`.execute(t.db);
    assert.equal(rows[0].n, 4, 'all still served');
    assert.equal((await lis('rethumbnail', '--datasource', '1')).code, 2, '--datasource needs --country');
  });

  it('lis rethumbnail refuses a preset the config does not have, naming those it has, and queues nothing', async () => {
    await insertUrls(t.db, 'uk', 2);
    await sql`UPDATE live_images SET stage = 'live', state = 'done', image_data = '{"presets":{"small":{"path":"x"}}}', live_data = '{"presets":{"small":{"path":"x"}}}'`.execute(
      t.db,
    );
    await relistAll(t.db);
    // Every live image lacks a name no preset has: without the check this typo queued them all.
    const typo = await lis('rethumbnail', '--country', 'uk', '--preset', 'hgue');
    assert.equal(typo.code, 2, typo.output);
    assert.match(typo.output, /--preset "hgue": not a configured preset \(thumbnail.presets: small, huge\)/);
    assert.deepEqual(await countBy(t.db), { 'live/done': 2 });
  });

  it("lis rethumbnail after a datasource's settings changed takes its images waiting in push too, tells of those in hand, and --stale later takes only those", async () => {
    const original = await flatJpeg(64, 48);
    await insertThumbnailRows(
      t.db,
      t.config,
      'uk',
      [1, 2, 3, 4].map((i) => ({ url: `http://ds16.example/${i}.jpg`, datasourceId: 16, original })),
    );
    await runThumbnailStage(t.db, t.config, t.url);
    const details = async () =>
      (await sql<{ n: number; details: unknown }>`SELECT id::int AS n, image_data->'details' AS details FROM live_images ORDER BY id`.execute(t.db)).rows;
    const { sharpen, gamma, quality } = t.config.thumbnail.defaults;
    for (const row of await details()) assert.deepEqual(row.details, { sharpen, gamma, quality }, 'image_data records the settings it was made with');
    // 1 and 4 went live; 2 waits in push; 3 is being pushed (a pusher holds it).
    const goLive = (where: ReturnType<typeof sql>) =>
      sql`UPDATE live_images SET stage = 'live', state = 'done', live_data = image_data, locked_by = NULL, locked_at = NULL WHERE ${where}`.execute(t.db);
    const ids = (await details()).map((r) => r.n);
    await goLive(sql`id IN (${ids[0]}, ${ids[3]})`);
    await sql`UPDATE live_images SET locked_by = 'web1:42', locked_at = now() WHERE id = ${ids[2]}`.execute(t.db);
    await relistAll(t.db);

    // The operator changes the datasource's quality and re-thumbnails it.
    // A gamma too: stored as a real (1.2000000476837158), compared as the thumbnailer records it (1.2).
    await sql`INSERT INTO datasources (country, datasource_id, quality, gamma) VALUES ('uk', 16, 50, 1.2)
              ON CONFLICT (country, datasource_id) DO UPDATE SET quality = 50, gamma = 1.2`.execute(t.db);
    const first = await lis('rethumbnail', '--country', 'uk', '--datasource', '16');
    assert.equal(first.code, 0, first.output);
    assert.match(first.output, /^3 images queued for thumbnailing again/m, 'the live ones and the one waiting in push (it would go live with the old quality)');
    assert.match(
      first.output,
      /^1 more are being thumbnailed or pushed right now, .*`lis rethumbnail --country uk --datasource 16 --stale` takes every image not made with the settings in force$/m,
    );
    assert.deepEqual(await countBy(t.db), { 'push/waiting/locked': 1, 'thumbnail/waiting': 3 });

    // Made again with quality 50 and live; the held one went live as it was.
    await runThumbnailStage(t.db, t.config, t.url);
    await goLive(sql`true`);
    const after = await details();
    assert.deepEqual(
      after.map((r) => r.details),
      [1, 2, 3, 4].map((i) => (i === 3 ? { sharpen, gamma, quality } : { sharpen, gamma: 1.2, quality: 50 })),
    );
    const stale = await lis('rethumbnail', '--country', 'uk', '--datasource', '16', '--stale');
    assert.equal(stale.code, 0, stale.output);
    assert.match(stale.output, /^1 images queued/m, 'only the one made with the old quality');
    assert.doesNotMatch(stale.output, /more are being/);
    assert.deepEqual(await countBy(t.db), { 'live/done': 3, 'thumbnail/waiting': 1 });
  });
});
