// lis_imaged fetches an origin's original from all its sources at once, each into a file of its own beside the
// original. Those files are temp files: a SIGKILL leaves them behind, and the store's sweep of dead writers'
// temp files (fs_check) must know them as such, not take them for real files to be judged an hour later.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { lis_hash_for_url } from '../src/hash/image-hash.ts';
import { tempFileWriter } from '../src/store/atomic-file.ts';
import { originalPath } from '../src/store/store-layout.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg, startImaged } from './helpers/imaged-fixtures.ts';
import { rawGet } from './helpers/imaged-in-process.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe("lis_imaged's fallback files, left by a SIGKILL", function () {
  this.timeout(120_000);
  let t: TestDatabase | null = null;
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await t?.drop();
    t = null;
  });

  it("are temp files of the dead process: fs_check removes them at once, as any dead writer's partial file", async () => {
    const photo = await photoJpeg(400, 300);
    const origin = await OriginServer.start(new Map([['/web/k.jpg', photo]]));
    closers.push(() => origin.close());
    // The origin sends half the photo, then holds the rest: its candidate is being written when the process dies.
    origin.halfway.add('/web/k.jpg');
    // The uploads folder lacks the key: a second source, so that each candidate writes into a file of its own.
    const uploads = fs.mkdtempSync('/tmp/lis-uploads-');
    closers.push(() => fs.rmSync(uploads, { recursive: true, force: true }));
    t = await createTestDatabase({
      overrides: {
        download: { ...TEST_DOWNLOAD, timeouts: { connectSeconds: 60, firstByteSeconds: 60, totalSeconds: 60 } },
        thumbnail: { presets: { small: { width: 120, height: 90, mode: 'crop' } } },
        imaged: {
          origins: {
            web: {
              country: 'uk',
              datasourceId: 3,
              sources: [
                { type: 'http', baseUrl: origin.url('/web/') },
                { type: 'folder', dir: uploads },
              ],
            },
          },
        },
      },
    });
    const config = t.writeConfig();
    const imaged = await startImaged(config, { LIS_DATABASE_URL: t.url });
    closers.push(imaged.stop);

    void rawGet(imaged.url, '/web/small/k.jpg').catch(() => {});
    const original = originalPath(t.config, 'uk', lis_hash_for_url(origin.url('/web/k.jpg')));
    const dir = path.dirname(original);
    const base = path.basename(original);
    const leftovers = () => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith(`${base}.`)) : []);
    // The HTTP candidate's file, `<original>.tmp-<pid>-<x>`, as its writer writes it (`.tmp-<pid>-<y>` more).
    await waitFor(() => leftovers().length > 0, 30_000, 'the HTTP candidate being written');
    imaged.run.child.kill('SIGKILL');
    await imaged.run.exited;
    const left = leftovers();
    assert.equal(left.length, 1, left.join(', '));
    const pid = imaged.run.child.pid;
    assert.equal(tempFileWriter(left[0]), pid, `${left[0]}: named as a temp file of the process that wrote it`);
    assert.equal(tempFileWriter(left[0].replace(/\.tmp-\d+-[0-9a-f]+$/, '')), pid, `${left[0]}: the candidate's own file, a temp file too`);
    assert.ok(!fs.existsSync(original));

    const check = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: config, LIS_DATABASE_URL: t.url });
    const done = await check.exited;
    assert.equal(done.code, 0, check.output());
    assert.match(check.output(), /originals 0 orphans\/1 partial/);
    assert.deepEqual(leftovers(), [], 'removed at once, not an hour later');
  });
});
