import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { originalPath } from '../src/store/store-layout.ts';
import { makeTestImages, startImageServer, type ImageServer, type TestImages } from './helpers/image-server.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { readLog } from './helpers/log-files.ts';

describe('bin/lis_downloadd (a real daemon process)', function () {
  this.timeout(40_000);
  let images: TestImages;
  let server: ImageServer;
  let t: TestDatabase;
  before(async () => {
    images = await makeTestImages();
    server = await startImageServer(images);
  });
  after(async () => server.close());
  beforeEach(async () => (t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } })));
  afterEach(async () => t.drop());

  it('downloads, classifies and stores, lives through every bad server, and exits 0', async () => {
    const paths = [
      '/good.jpg',
      '/good.webp',
      '/gzip.jpg',
      '/404',
      '/html-as-jpeg.jpg',
      '/redirect-loopback',
      '/loop-a',
      '/drip.jpg',
      '/endless.jpg',
      '/lying-length.jpg',
      '/truncated.jpg',
      '/429',
    ];
    await t.db
      .insertInto('live_images')
      .values(paths.map((p) => ({ country: 'uk', datasource_id: 3, image_url: server.url(p) })))
      .execute();
    const run = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig(), '--noproxy', '--verbose']);
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.match(run.output(), /No rows gained\. No work to do\./);
    assert.match(run.output(), /Exiting\(time_to_die: 0\)/);

    const rows = await t.db.selectFrom('live_images').select(['image_url', 'image_hash', 'stage', 'state', 'last_error_class', 'content_hash']).execute();
    const outcome = Object.fromEntries(rows.map((r) => [r.image_url.replace(server.origin, ''), `${r.stage}/${r.state}/${r.last_error_class ?? ''}`]));
    assert.deepEqual(outcome, {
      '/good.jpg': 'thumbnail/waiting/',
      '/good.webp': 'thumbnail/waiting/',
      '/gzip.jpg': 'thumbnail/waiting/',
      '/404': 'download/failed/http_404',
      '/html-as-jpeg.jpg': 'download/failed/not_image',
      '/redirect-loopback': 'download/failed/refused_address',
      '/loop-a': 'download/failed/redirect_loop',
      '/drip.jpg': 'download/waiting/timeout',
      '/endless.jpg': 'download/failed/too_large',
      '/lying-length.jpg': 'download/waiting/truncated',
      '/truncated.jpg': 'download/failed/corrupt_image',
      '/429': 'download/waiting/http_429',
    });
    for (const row of rows.filter((r) => r.stage === 'thumbnail')) {
      assert.ok(fs.existsSync(originalPath(t.config, 'uk', row.image_hash)), row.image_url);
    }
    const stored = fs
      .readdirSync(t.config.stores.originals, { recursive: true })
      .map(String)
      .filter((f) => /[0-9a-f]{32}/.test(path.basename(f)));
    assert.equal(stored.length, 3, `only the three good originals, no temp files: ${stored.join(', ')}`);
    const log = readLog(path.join(t.config.log.dir, 'downloadd.uk.log'));
    assert.match(log, /Download::fetch.*\/404: http_404: HTTP 404 Not Found/);
    const worker = await t.db.selectFrom('workers').selectAll().executeTakeFirstOrThrow();
    assert.equal(worker.component, 'downloadd');
    assert.equal(Number(worker.rows_done), 3);
    assert.equal(Number(worker.rows_failed), 9);
  });

  it('rejects a bad download setting by name', async () => {
    const file = path.join(t.dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ download: { timeouts: { totalSeconds: 0 }, proxy: 'socks5://x' } }));
    const run = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', file]);
    assert.equal((await run.exited).code, 1);
    assert.match(run.output(), /download\.timeouts\.totalSeconds: Too small/);
    assert.match(run.output(), /download\.proxy: an http:\/\/ or https:\/\/ proxy URL/);
  });
});
