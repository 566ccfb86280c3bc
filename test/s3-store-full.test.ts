// Our originals store failing while an S3 original is written is our fault, as for an HTTP download: the
// runner then pauses the stage and gives the row back uncharged. It was recorded as the source's `connection`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { parseConfig } from '../src/config/load-config.ts';
import { createDownloadClient } from '../src/download/download-client.ts';
import { SchemeFetcher } from '../src/download/fetch-by-scheme.ts';
import { photoJpeg, s3Credentials, startS3rver } from './helpers/imaged-fixtures.ts';

describe('an S3 original into a full originals store', function () {
  this.timeout(30_000);
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('is store_write_failed (ours), not connection (the source’s), and leaves no partial file', async () => {
    const s3dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-s3rver-'));
    cleanups.push(() => fs.rmSync(s3dir, { recursive: true, force: true }));
    const s3 = await startS3rver(s3dir, ['photos']);
    cleanups.push(() => s3.close());
    const picture = await photoJpeg(3000, 2000);
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3Credentials() });
    await client.send(new PutObjectCommand({ Bucket: 'photos', Key: 'big.jpg', Body: picture }));
    client.destroy();

    // A real file system that fills up mid-write: a tmpfs smaller than the picture.
    const store = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-originals-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', store]);
    cleanups.push(() => {
      execFileSync('umount', ['-l', store]);
      fs.rmSync(store, { recursive: true, force: true });
    });
    assert.ok(picture.length > 8 * 16 * 1024, `${picture.length} bytes: more than the store holds`);

    const config = parseConfig(
      { database: { url: 'postgres://unused/db' }, imaged: { s3: { photos: { endpoint: s3.endpoint, ...s3Credentials() } } } },
      {},
      store,
    );
    const http = createDownloadClient(config.download);
    const fetcher = new SchemeFetcher(http, config);
    cleanups.push(() => {
      fetcher.destroy();
      http.destroy();
    });
    const destination = path.join(store, 'uk/ab/cd/abcd0000000000000000000000000000');
    const outcome = await fetcher.fetch({ url: 's3://photos/big.jpg', destination, maxBytes: 10_000_000, maxPixels: 50_000_000, totalMs: 20_000 });
    assert.equal(outcome.kind, 'failed');
    assert.deepEqual(outcome.kind === 'failed' && [outcome.failure.errorClass, outcome.failure.retryable], ['store_write_failed', true]);
    assert.match(outcome.kind === 'failed' ? outcome.failure.reason : '', /^cannot write the original: ENOSPC/);
    assert.deepEqual(fs.readdirSync(path.dirname(destination)), [], 'the partial file is removed');
  });
});
