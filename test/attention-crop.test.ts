// Our attention crop against sharp's own (libvips' smartcrop): the same offset and the same bytes, over a corpus.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { thumbnailConfigSchema, type Preset, type ThumbnailConfig } from '../src/config/thumbnail-config.ts';
import {
  attentionFromMap,
  attentionMap,
  attentionOffset,
  gaussTaps,
  offsetFor,
  rawInput,
  SKIN_VECTOR,
  type RawPicture,
} from '../src/thumbnail/attention-crop.ts';
import { cutPreset, decodeOriginal, type ThumbnailSettings } from '../src/thumbnail/make-thumbnails.ts';
import { cropWindow, type Size } from '../src/thumbnail/preset-geometry.ts';
import { resolveDetails } from '../src/thumbnail/process-details.ts';
import { EXIF_DIR, PNGSUITE_DIR } from './helpers/thumbnail-fixtures.ts';
import pLimit from 'p-limit';

const config: ThumbnailConfig = thumbnailConfigSchema.parse({});

/** The default small box, a square and a portrait one. */
const BOXES: Preset[] = [config.presets.small, { width: 100, height: 100, mode: 'crop' }, { width: 90, height: 160, mode: 'crop' }];

/** Boxes whose cover picture can be under 32 px on a side, so the 32x32 map is an enlargement (not for all 161 PngSuite images: time). */
const TINY_BOXES: Preset[] = [
  { width: 24, height: 16, mode: 'crop' },
  { width: 8, height: 30, mode: 'crop' },
];

/** Default details (sharpening on, so the convolution follows the cut) and a WebP twin: every file of a preset is compared. */
const settings: ThumbnailSettings = {
  presets: config.presets,
  details: resolveDetails({ sharpen: null, gamma: null, quality: null }, config.defaults),
  twins: { ...config.twins, webp: true },
  maxPixels: config.maxPixels,
  timeoutSeconds: config.timeoutSeconds,
  failOn: config.failOn,
};

interface Named {
  name: string;
  picture: RawPicture;
}

/** The working picture makeThumbnails cuts its presets from. */
async function working(name: string, original: Buffer): Promise<Named> {
  const decoded = await decodeOriginal(original, settings);
  return { name, picture: { data: decoded.working.pixels, size: decoded.working.size } };
}

/**
 * PngSuite's valid images as working pictures, decoded once for the two tests that take them all (as sharp's
 * offsets below are asked once): the last test asked again for what the PngSuite one had made, 3.8 s of its own.
 */
let pngSuite: Promise<Named[]> | undefined;
function pngSuiteWorking(): Promise<Named[]> {
  return (pngSuite ??= (async () => {
    const files = fs.readdirSync(PNGSUITE_DIR).filter((f) => f.endsWith('.png') && !f.startsWith('x'));
    assert.ok(files.length >= 150, `${files.length} images`);
    return Promise.all(files.map((f) => working(f, fs.readFileSync(path.join(PNGSUITE_DIR, f)))));
  })());
}

/** sharpsOffset's answers by picture and box: sharp's pick is a pure function of the pixels and the box. */
const sharpsOffsets = new WeakMap<RawPicture, Map<string, Promise<{ left: number; top: number }>>>();

/** What sharp itself picks, from the working picture exactly as cutPreset's sharp road cuts it (asked once per picture and box). */
function sharpsOffset(picture: RawPicture, box: Size): Promise<{ left: number; top: number }> {
  const byBox = sharpsOffsets.get(picture) ?? sharpsOffsets.set(picture, new Map()).get(picture)!;
  const key = `${box.width}x${box.height}`;
  const known = byBox.get(key);
  if (known) return known;
  const asked = askSharp(picture, box);
  byBox.set(key, asked);
  return asked;
}

async function askSharp(picture: RawPicture, box: Size): Promise<{ left: number; top: number }> {
  const window = cropWindow(picture.size, box);
  let pipeline = sharp(picture.data, rawInput(picture));
  if (window.width !== picture.size.width || window.height !== picture.size.height) pipeline = pipeline.extract(window);
  const { info } = await pipeline.resize(box.width, box.height, { fit: 'cover', position: 'attention' }).raw().toBuffer({ resolveWithObject: true });
  return { left: 0 - (info.cropOffsetLeft ?? 0), top: 0 - (info.cropOffsetTop ?? 0) };
}

/** The picture scaled to cover the box (as cutPreset scales it before finding the offset). */
async function coverOf(picture: RawPicture, box: Size): Promise<RawPicture> {
  const window = cropWindow(picture.size, box);
  let pipeline = sharp(picture.data, rawInput(picture));
  if (window.width !== picture.size.width || window.height !== picture.size.height) pipeline = pipeline.extract(window);
  const { data, info } = await pipeline.resize(box.width, box.height, { fit: 'outside' }).raw().toBuffer({ resolveWithObject: true });
  return { data, size: { width: info.width, height: info.height } };
}

interface Tally {
  cases: number;
  byLibvips: string[];
}

/**
 * Cases compared at once: each is a handful of sharp calls on a small picture, so one at a time spent most of its
 * time handing work to libvips' threads and back (PngSuite's 483 cases: 17-20 s on a quiet machine, 42 s beside
 * the suite's other job). The tally is the same in any order.
 */
const CASES_AT_ONCE = 4;

/** Every picture in every box: our offset is sharp's, and cutPreset's files are byte for byte those of sharp's road. */
async function compareAll(pictures: Named[], boxes: Preset[]): Promise<Tally> {
  const tally: Tally = { cases: 0, byLibvips: [] };
  const wrong: string[] = [];
  const compare = async ({ name, picture }: Named, box: Preset) => {
    const label = `${name} ${picture.size.width}x${picture.size.height} in ${box.width}x${box.height}`;
    const expected = await sharpsOffset(picture, box);
    const ours = await attentionOffset(await coverOf(picture, box), box);
    if (ours.by === 'libvips') tally.byLibvips.push(label);
    tally.cases++;
    if (ours.left !== expected.left || ours.top !== expected.top) {
      wrong.push(`${label}: ours ${ours.left},${ours.top} (${ours.by}), sharp's ${expected.left},${expected.top}`);
      return;
    }
    const input = () => sharp(picture.data, rawInput(picture));
    const [fast, plain] = await Promise.all([
      cutPreset(input, picture.size, picture.size, box, settings, { workingPicture: true }),
      cutPreset(input, picture.size, picture.size, box, settings),
    ]);
    assert.deepEqual(
      fast.files.map((f) => f.ext),
      ['jpg', 'webp'],
    );
    for (const [i, file] of fast.files.entries()) {
      if (!file.data.equals(plain.files[i].data)) wrong.push(`${label}: the ${file.ext} differs from sharp's`);
    }
  };
  const limit = pLimit(CASES_AT_ONCE);
  await Promise.all(pictures.flatMap((picture) => boxes.map((box) => limit(() => compare(picture, box)))));
  assert.deepEqual(wrong.sort(), [], `${wrong.length} of ${tally.cases} differ`);
  tally.byLibvips.sort();
  return tally;
}

/** A reproducible pseudo-random byte stream (xorshift32). */
function randomBytes(seed: number, length: number, around = 128, spread = 255): Buffer {
  let s = seed >>> 0 || 1;
  const bytes = Uint8Array.from({ length }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return Math.max(0, Math.min(255, Math.round(around + (s / 2 ** 32 - 0.5) * spread)));
  });
  return Buffer.from(bytes.buffer);
}

const flat = (size: Size, rgb: [number, number, number]): RawPicture => ({
  data: Buffer.from(Uint8Array.from({ length: size.width * size.height * 3 }, (_, i) => rgb[i % 3]).buffer),
  size,
});

async function resized(picture: RawPicture, size: Size): Promise<RawPicture> {
  const data = await sharp(picture.data, rawInput(picture)).resize(size.width, size.height, { fit: 'fill' }).raw().toBuffer();
  return { data, size };
}

const photo = (name: string) => fs.readFileSync(path.join(EXIF_DIR, name));

describe('the attention crop (attention-crop.ts) against sharp', function () {
  this.timeout(300_000);

  it('builds the Gaussian as vips_gaussmat does at integer precision, and centres the box on the maximum as libvips does', () => {
    // sigma 1: exp(-x^2/2) is 1, 0.61, 0.14: the 0.2 cut keeps offsets -1..1, taps rint(20 x).
    assert.deepEqual(gaussTaps(1), { taps: [12, 20, 12], scale: 44 });
    // A 135x90 cover picture, a 120x90 box: x 0..14 of the map keep the left edge, x 31 the right one.
    assert.deepEqual(offsetFor(0, 0, { width: 135, height: 90 }, { width: 120, height: 90 }), { left: 0, top: 0 });
    assert.deepEqual(offsetFor(15, 31, { width: 135, height: 90 }, { width: 120, height: 90 }), { left: 3, top: 0 });
    assert.deepEqual(offsetFor(31, 0, { width: 135, height: 90 }, { width: 120, height: 90 }), { left: 15, top: 0 });
  });

  it('every valid PngSuite image', async () => {
    const pictures = await pngSuiteWorking();
    const tally = await compareAll(pictures, BOXES);
    console.log(`      PngSuite: ${tally.cases} crops, ${tally.byLibvips.length} too close to call (libvips decided)`);
  });

  it("the 18 EXIF photos upright, and resized copies from 1000 px down to smaller than the box, some of the box's own shape", async () => {
    const files = fs.readdirSync(EXIF_DIR).filter((f) => f.endsWith('.jpg'));
    assert.equal(files.length, 18);
    const photos = await Promise.all(files.map((f) => working(f, photo(f))));
    const copies: Named[] = [];
    for (const source of photos.filter((p) => p.name.endsWith('_1.jpg'))) {
      const { width, height } = source.picture.size;
      for (const scale of [1.6, 0.52, 0.25, 0.19, 0.1]) {
        const size = { width: Math.round(width * scale), height: Math.round(height * scale) };
        copies.push({ name: `${source.name} at ${scale}`, picture: await resized(source.picture, size) });
      }
      // The boxes' own shapes, bigger and smaller than the box: nothing to crop (cutAtAttention's one pipeline).
      for (const size of [
        { width: 640, height: 480 },
        { width: 60, height: 45 },
        { width: 500, height: 500 },
        { width: 270, height: 480 },
        { width: 45, height: 80 },
      ]) {
        copies.push({ name: `${source.name} at ${size.width}x${size.height}`, picture: await resized(source.picture, size) });
      }
    }
    const tally = await compareAll([...photos, ...copies], [...BOXES, ...TINY_BOXES]);
    console.log(`      photos: ${tally.cases} crops, ${tally.byLibvips.length} too close to call: ${tally.byLibvips.join('; ')}`);
    // Photos are where the time goes: nearly all must be ours, or the speed-up is gone.
    assert.ok(tally.byLibvips.length <= tally.cases / 10, `${tally.byLibvips.length} of ${tally.cases} photo crops went to libvips`);
  });

  it('noise, flat and symmetric pictures, a panorama and a tall strip (through cropWindow)', async () => {
    const landscape = (await working('Landscape_1.jpg', photo('Landscape_1.jpg'))).picture;
    const portrait = (await working('Portrait_1.jpg', photo('Portrait_1.jpg'))).picture;
    const dot: RawPicture = flat({ width: 300, height: 100 }, [255, 255, 255]);
    for (let y = 40; y < 60; y++) for (let x = 140; x < 160; x++) dot.data.fill(0, (y * 300 + x) * 3, (y * 300 + x) * 3 + 3);
    const pictures: Named[] = [
      { name: 'noise', picture: { data: randomBytes(1, 300 * 200 * 3), size: { width: 300, height: 200 } } },
      { name: 'faint noise', picture: { data: randomBytes(2, 400 * 150 * 3, 128, 6), size: { width: 400, height: 150 } } },
      { name: 'noisy skin', picture: { data: randomBytes(3, 250 * 250 * 3, 170, 40), size: { width: 250, height: 250 } } },
      { name: 'white', picture: flat({ width: 200, height: 100 }, [255, 255, 255]) },
      { name: 'black', picture: flat({ width: 100, height: 200 }, [0, 0, 0]) },
      { name: 'skin', picture: flat({ width: 160, height: 90 }, [224, 172, 140]) },
      { name: 'red', picture: flat({ width: 90, height: 300 }, [230, 20, 20]) },
      { name: 'centred dot', picture: dot },
      { name: 'panorama 3:1', picture: await resized(landscape, { width: 900, height: 300 }) },
      { name: 'panorama 16:1 (cropWindow)', picture: await resized(landscape, { width: 2400, height: 150 }) },
      { name: 'tall strip (cropWindow)', picture: await resized(portrait, { width: 30, height: 3000 }) },
      { name: 'strip one pixel high', picture: await resized(landscape, { width: 700, height: 1 }) },
    ];
    const tally = await compareAll(pictures, [...BOXES, ...TINY_BOXES]);
    console.log(`      made pictures: ${tally.cases} crops, ${tally.byLibvips.length} too close to call: ${tally.byLibvips.join('; ')}`);
    // The flat ones have no maximum at all: those must have gone to libvips, not been guessed.
    for (const name of ['white', 'black', 'skin', 'red']) {
      assert.ok(
        tally.byLibvips.some((label) => label.startsWith(`${name} `)),
        `${name}: a flat picture is a tie everywhere`,
      );
    }
  });

  it("the corpus tells a wrong score from the right one: with the skin vector's terms swapped, PngSuite offsets differ from sharp's", async () => {
    const box = config.presets.small;
    let disagreements = 0;
    const limit = pLimit(CASES_AT_ONCE);
    const judge = async ({ name, picture }: Named) => {
      const cover = await coverOf(picture, box);
      const map = await attentionMap(cover);
      const expected = await sharpsOffset(picture, box);
      const right = attentionFromMap(map, cover.size, box);
      const wrong = attentionFromMap(map, cover.size, box, [SKIN_VECTOR[1], SKIN_VECTOR[0], SKIN_VECTOR[2]]);
      if (right) assert.deepEqual(right, expected, name);
      if (wrong && (wrong.left !== expected.left || wrong.top !== expected.top)) disagreements++;
    };
    await Promise.all((await pngSuiteWorking()).map((picture) => limit(() => judge(picture))));
    assert.ok(disagreements >= 5, `a swapped skin vector changed ${disagreements} offsets: the corpus hardly sees the skin score`);
  });
});
