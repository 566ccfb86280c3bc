import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { checkStore } from '../src/daemon/store-check.ts';
import { classifyDownloadError } from '../src/download/classify-download-error.ts';
import { OriginalWriter } from '../src/download/original-writer.ts';

/** OriginalWriter and the store's folders, on the real file system. */
describe("the originals store's folders", () => {
  let dir: string;
  let jpeg: Buffer;
  before(async () => {
    jpeg = await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 9, g: 8, b: 7 } } })
      .jpeg()
      .toBuffer();
  });
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-store-folders-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = async (file: string) => {
    const writer = new OriginalWriter(file, { maxBytes: 1_000_000, maxPixels: 50_000_000, until: performance.now() + 10_000 });
    try {
      await writer.write(jpeg);
      return await writer.finish();
    } catch (error) {
      await writer.discard();
      throw error;
    }
  };

  it('makes a folder again that went away since this process made it (a store emptied, or a fresh disk mounted in its place)', async () => {
    const store = path.join(dir, 'originals');
    assert.equal((await write(path.join(store, 'uk/aa/bb/first'))).stored, true);
    fs.rmSync(path.join(store, 'uk'), { recursive: true });
    assert.equal((await write(path.join(store, 'uk/aa/bb/second'))).stored, true);
    assert.deepEqual(fs.readFileSync(path.join(store, 'uk/aa/bb/second')), jpeg);
    assert.deepEqual(fs.readdirSync(path.join(store, 'uk/aa/bb')), ['second']);
  });

  it("a store on a read-only file system fails with EROFS, said once, not Node's ENOENT from a recursive mkdir", async () => {
    const store = path.join(dir, 'originals');
    fs.mkdirSync(store);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', store]);
    try {
      const error = await write(path.join(store, 'uk/aa/bb/first')).then(
        () => assert.fail('written on a read-only file system'),
        (e: unknown) => e,
      );
      const failure = classifyDownloadError(error);
      assert.equal(failure.errorClass, 'store_write_failed');
      assert.match(failure.reason, /^cannot write the original: EROFS: read-only file system, mkdir '.*\/originals\/uk'$/);
    } finally {
      execFileSync('umount', ['-l', store]);
    }
  });

  it('the store check before each claim says EROFS for a store folder not yet made on a read-only disk, not ENOENT', async () => {
    // The pause line an operator reads: before, `ENOENT: cannot write .../originals: ENOENT: no such file or directory, mkdir`.
    const disk = path.join(dir, 'disk');
    fs.mkdirSync(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', disk]);
    try {
      const health = await checkStore(path.join(disk, 'originals'), { minFreeBytes: 0, minFreePercent: 0 });
      assert.equal(health.ok, false);
      assert.match(health.reason!, /^EROFS: cannot write .*\/disk\/originals: EROFS: read-only file system, mkdir '.*\/disk\/originals'$/);
    } finally {
      execFileSync('umount', ['-l', disk]);
    }
  });
});
