// An original written in one call to a disk with less room than it needs: the kernel writes what fits and says so
// by the count, not by an error (a short write). Taken as whole, the truncated file was fsynced, renamed into place
// and recorded as stored, with the full byte count and the hash of bytes the file does not hold.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { fetchFileOriginal } from '../src/download/fetch-file-original.ts';
import { OriginalWriter } from '../src/download/original-writer.ts';
import { photoJpeg } from './helpers/imaged-fixtures.ts';

describe('an original written to a disk that fills up', function () {
  this.timeout(30_000);
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });
  /** A real 16 KiB file system (tmpfs), unmounted after the test. */
  const tinyDisk = (): string => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-writer-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', dir]);
    cleanups.push(() => {
      execFileSync('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  };

  it('fails with ENOSPC when a write is cut short, and leaves neither the original nor a temp file', async () => {
    const store = tinyDisk();
    const picture = await photoJpeg(1500, 1000);
    assert.ok(picture.length > 2 * 16 * 1024, `${picture.length} bytes: more than the disk holds`);
    const destination = path.join(store, 'uk', 'ab', 'cd', 'abcd0000000000000000000000000000');
    const writer = new OriginalWriter(destination, { maxBytes: 10_000_000, maxPixels: 50_000_000, until: performance.now() + 20_000 });
    // One chunk: all of it goes to the file in one write, as when a small original arrives in one read.
    await assert.rejects(
      (async () => {
        await writer.write(picture);
        await writer.finish();
      })(),
      (error: NodeJS.ErrnoException) => error.code === 'ENOSPC',
    );
    await writer.discard();
    assert.deepEqual(fs.readdirSync(path.dirname(destination)), [], 'no original, no temp file');
  });

  it("from an origin folder: store_write_failed (ours), not the source's `connection`", async () => {
    const store = tinyDisk();
    const uploads = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-uploads-'));
    cleanups.push(() => fs.rmSync(uploads, { recursive: true, force: true }));
    fs.writeFileSync(path.join(uploads, 'big.jpg'), await photoJpeg(1500, 1000));
    const destination = path.join(store, 'uk', 'ab', 'cd', 'abcd0000000000000000000000000000');
    const outcome = await fetchFileOriginal([uploads], {
      url: pathToFileURL(path.join(uploads, 'big.jpg')).href,
      destination,
      maxBytes: 10_000_000,
      maxPixels: 50_000_000,
      totalMs: 20_000,
    });
    assert.deepEqual(
      outcome.kind === 'failed' && [outcome.failure.errorClass, outcome.failure.retryable],
      ['store_write_failed', true],
      JSON.stringify(outcome),
    );
    assert.match(outcome.kind === 'failed' ? outcome.failure.reason : '', /^cannot write the original: ENOSPC/);
    assert.deepEqual(fs.readdirSync(path.dirname(destination)), [], 'no original, no temp file');
  });
});
