// lis_imaged under our own faults and abusive clients: real stores (tmpfs the test mounts), a real PostgreSQL
// (through a proxy the test can cut), real HTTP. Our faults answer 503 and cost no row anything.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { fillUp } from '../bench/lib/fill-up.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg } from './helpers/imaged-fixtures.ts';
import { insertQueuedRow, rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const PRESETS = {
  small: { width: 120, height: 90, mode: 'crop' as const },
  medium: { width: 320, height: 240, mode: 'pad' as const },
};

describe('lis_imaged QA: our faults, abusive clients', function () {
  this.timeout(60_000);
  let t: TestDatabase | undefined;
  let origin: OriginServer;
  let original: Buffer;
  const closers: Array<() => Promise<void> | void> = [];

  before(async () => {
    original = await photoJpeg(900, 600);
  });
  beforeEach(async () => {
    origin = await OriginServer.start(new Map([['/photo.jpg', original]]));
    closers.push(() => origin.close());
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await t?.drop();
    t = undefined;
  });

  async function setup(extra: LisConfigInput = {}) {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: PRESETS }, ...extra } });
    const server = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(server.close);
    return { t, server };
  }

  /** A small tmpfs of its own (a store's disk), unmounted at the end. */
  function tmpfs(size: string): string {
    const dir = fs.mkdtempSync('/tmp/lis-imaged-qa-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    closers.push(() => {
      execFileSync('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  }

  const rowFacts = (db: TestDatabase['db'], id: string) =>
    db.selectFrom('live_images').select(['stage', 'state', 'attempts', 'locked_by', 'last_error_class']).where('id', '=', id).executeTakeFirstOrThrow();

  /** Files in `dir` (recursively) that are not whole files of ours: temp names of atomic writes, candidates. */
  const partials = (dir: string) => (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => /\.tmp-|\.candidate-/.test(f));

  it('a full store while working a queued row is 503 naming it, never 502; the row is given back uncharged and is made once there is room', async () => {
    const thumbs = tmpfs('4m');
    const originals = tmpfs('256k');
    const { t, server } = await setup({ stores: { thumbnails: thumbs, originals } });
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));

    // The originals store full: the download cannot keep what it fetched.
    fillUp(path.join(originals, 'filler'));
    const noRoom = await rawGet(server.url, row.pathOf('small'));
    assert.equal(noRoom.status, 503, noRoom.body.toString());
    assert.match(noRoom.body.toString(), /download: store_write_failed: cannot write the original: ENOSPC/);
    assert.equal(noRoom.headers['retry-after'], '5');
    assert.deepEqual(await rowFacts(t.db, row.id), {
      stage: 'download',
      state: 'waiting',
      attempts: 0,
      locked_by: null,
      last_error_class: 'store_write_failed',
    });
    fs.rmSync(path.join(originals, 'filler'));

    // Now the thumbnail store full: the download is done, the thumbnails cannot be written.
    fillUp(path.join(thumbs, 'filler'));
    const noThumbs = await rawGet(server.url, row.pathOf('small'));
    assert.equal(noThumbs.status, 503, noThumbs.body.toString());
    assert.match(noThumbs.body.toString(), /thumbnail: store_write_failed: cannot write thumbnails: ENOSPC/);
    assert.deepEqual(await rowFacts(t.db, row.id), {
      stage: 'thumbnail',
      state: 'waiting',
      attempts: 0,
      locked_by: null,
      last_error_class: 'store_write_failed',
    });
    assert.deepEqual(partials(thumbs), [], 'no partial file left in the store');
    fs.rmSync(path.join(thumbs, 'filler'));

    const made = await rawGet(server.url, row.pathOf('small'));
    assert.equal(made.status, 200, made.body.toString());
    assert.deepEqual(await rowFacts(t.db, row.id), { stage: 'push', state: 'waiting', attempts: 0, locked_by: null, last_error_class: null });
  });
});
