// makeThumbnails' limits on what it decodes: a pixel bomb refused from its header (thumbnail.maxPixels), an
// image slow to decode given up at thumbnail.timeoutSeconds. (Out of thumbnail-images.test.ts, the suite's last
// long file: mocha --parallel hands out the files in order, and this one's 11 s now run earlier in the run.)
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { makeThumbnails } from '../src/thumbnail/make-thumbnails.ts';
import { EXIF_DIR, pixelBombPng } from './helpers/thumbnail-fixtures.ts';
import { rejection, settings } from './helpers/thumbnail-settings.ts';

describe("the decoder's limits (makeThumbnails, real decodes)", () => {
  it('refuses a pixel bomb (a tiny PNG declaring 60000x60000) quickly, from the header', async () => {
    const bomb = pixelBombPng(60000, 60000);
    assert.ok(bomb.length < 200);
    const started = Date.now();
    const error = await rejection(makeThumbnails(bomb, settings()));
    assert.equal(error.code, 'too_many_pixels');
    assert.match(error.message, /3600\.0 megapixels, over the limit of 50\.0/);
    assert.ok(Date.now() - started < 5000);
    const limited = await rejection(makeThumbnails(fs.readFileSync(path.join(EXIF_DIR, 'Landscape_1.jpg')), settings({}, { maxPixels: 1_000_000 })));
    assert.equal(limited.code, 'too_many_pixels');
  });

  it('gives up on an image that takes longer than timeoutSeconds to decode, as a retryable processing_timeout', async function () {
    // Making the AVIF took 42 s of a 60 s limit once, the suite beside a type-check on two cores.
    this.timeout(120_000);
    // Random noise as lossless AVIF is slow to decode (about 3 s for 6 megapixels on a loaded 2-core machine,
    // as long as encoding it), well over a 1 s limit yet far under maxPixels. Gaussian noise from libvips at
    // 17.5 megapixels, lossy, decoded as slowly but took 8 s to make.
    const [width, height] = [3000, 2000];
    const slow = await sharp(crypto.randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
      .avif({ effort: 0, lossless: true })
      .toBuffer();
    const started = Date.now();
    const error = await rejection(makeThumbnails(slow, settings({}, { timeoutSeconds: 1 })));
    assert.equal(error.code, 'processing_timeout');
    assert.equal(error.retryable, true);
    assert.match(error.message, /^not decoded within 1 s \(thumbnail\.timeoutSeconds\); libvips: timeout: \d+% complete$/);
    assert.ok(Date.now() - started < 30_000);
  });
});
