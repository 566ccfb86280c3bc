// The pure parts of lis_thumbnaild: notation, geometry, classes, hashes, PNG diagnosis.
import assert from 'node:assert/strict';
import { thumbnailConfigSchema } from '../src/config/thumbnail-config.ts';
import { UsageError } from '../src/errors.ts';
import { classifyImage, sameHashCountMatters } from '../src/thumbnail/classify-image.ts';
import { gammaTable } from '../src/thumbnail/gamma-curve.ts';
import { ImageError } from '../src/thumbnail/image-error.ts';
import { decodeError } from '../src/thumbnail/make-thumbnails.ts';
import { parseSharpen } from '../src/config/parse-sharpen.ts';
import { separableSharpen } from '../src/thumbnail/separable-sharpen.ts';
import { threeByThree } from '../src/thumbnail/sharpen-3x3.ts';
import { sharpenRoad } from '../src/thumbnail/sharpen-road.ts';
import { imageMagickWidth, sharpenKernel } from '../src/thumbnail/sharpen-kernel.ts';
import { pictureStats } from '../src/thumbnail/picture-stats.ts';
import { differenceHash, hammingDistance } from '../src/thumbnail/perceptual-hash.ts';
import { CROP_SEARCH_BOXES, cropWindow, presetGeometry, uprightSize, workingSize } from '../src/thumbnail/preset-geometry.ts';
import { resolveDetails, validateDetails } from '../src/thumbnail/process-details.ts';
import { parallelismFor } from '../src/thumbnail/sharp-settings.ts';

describe('thumbnail rules (pure)', () => {
  it('reads ImageMagick RADIUSxSIGMA sharpen notation, with one wording of error', () => {
    assert.deepEqual(parseSharpen('0x1'), { radius: 0, sigma: 1 });
    assert.deepEqual(parseSharpen('2x0.5'), { radius: 2, sigma: 0.5 });
    assert.equal(parseSharpen('0x0'), null);
    assert.equal(parseSharpen('none'), null);
    for (const bad of ['', '1', 'x1', '0x11', '0x-1', '1.x2', 'abc', '11x1']) {
      assert.throws(
        () => parseSharpen(bad),
        (e: unknown) =>
          e instanceof UsageError &&
          e.message === `--sharpen ${JSON.stringify(bad)}: expected RADIUSxSIGMA such as 0x1 (radius 0-10, sigma 0.01-10), or 0x0 or none for no sharpening`,
      );
    }
  });

  it("builds ImageMagick's sharpen mask: its width rule, minus a Gaussian, centre raised, sum 1, light rings cut", () => {
    // GetOptimalKernelWidth2D: the Gaussian's edge weight below 1/65535; an explicit radius gives 2r+1.
    assert.deepEqual(
      [0.5, 1, 1.5, 2].map((sigma) => imageMagickWidth(0, sigma)),
      [5, 9, 13, 15],
    );
    assert.equal(imageMagickWidth(2, 1), 5);
    for (const [spec, width] of [
      [{ radius: 0, sigma: 0.5 }, 3],
      [{ radius: 0, sigma: 1 }, 7],
      [{ radius: 2, sigma: 1 }, 5],
    ] as const) {
      const k = sharpenKernel(spec)!;
      assert.equal(k.width, width, `0x${spec.sigma} (radius ${spec.radius})`);
      assert.equal(k.height, width);
      assert.ok(Math.abs(k.kernel.reduce((s, x) => s + x, 0) - 1) < 1e-12, 'sums to 1: flat areas keep their level');
      const centre = (k.kernel.length - 1) / 2;
      assert.ok(k.kernel[centre] > 1 && k.kernel.every((x, i) => i === centre || x <= 0));
      assert.deepEqual(k.kernel, [...k.kernel].reverse(), 'symmetric');
    }
    // Sigma 0.5, before the cut: centre 1.2351, neighbours -0.0517, corners -0.0070 (ImageMagick's 5x5, rounded).
    assert.deepEqual(
      sharpenKernel({ radius: 0, sigma: 0.5 })!.kernel.map((x) => Number(x.toFixed(3))),
      [-0.007, -0.052, -0.007, -0.052, 1.235, -0.052, -0.007, -0.052, -0.007],
    );
    assert.equal(sharpenKernel(null), null);
    assert.equal(sharpenKernel({ radius: 0, sigma: 0.01 }), null, 'too slight to change a pixel');
  });

  it("a sharpen mask's road: 3x3 through its WebAssembly loop, 5x5 and wider separable", () => {
    const road = (notation: string) => {
      const spec = parseSharpen(notation);
      return sharpenRoad(spec, sharpenKernel(spec))?.kind ?? null;
    };
    assert.deepEqual(['0x0.5', '1x0.5', '0x0.8', '2x1.5', '0x1', '0x3', 'none'].map(road), [
      '3x3',
      '3x3',
      'separable',
      'separable',
      'separable',
      'separable',
      null,
    ]);
    const mask = threeByThree(sharpenKernel({ radius: 0, sigma: 0.5 }))!;
    // The weights sum to 1 (a flat picture stays flat): centre, four edges, four corners.
    assert.ok(Math.abs(mask.centre + 4 * mask.edge + 4 * mask.corner - 1) < 1e-12);
    assert.equal(threeByThree({ width: 3, height: 3, scale: 1, kernel: [0, 1, 0, 0, 1, 0, 0, 0, -1] }), null, 'not symmetric');
  });

  it('a sharpen mask of 5x5 or wider goes the separable road: the same mask, as a centre weight minus a separable Gaussian', () => {
    for (const notation of ['0x0.5', 'none']) {
      const spec = parseSharpen(notation);
      assert.equal(separableSharpen(spec, sharpenKernel(spec)), null, `${notation}: narrower than 5x5`);
    }
    for (const notation of ['0x0.8', '2x1.5', '0x1', '0x1.5', '3x1.5', '0x3', '0x10']) {
      const spec = parseSharpen(notation)!;
      const kernel = sharpenKernel(spec)!;
      const plan = separableSharpen(spec, kernel)!;
      assert.ok(plan, notation);
      const reach = (kernel.width - 1) / 2;
      assert.equal(plan.taps.length, reach + 1, `${notation}: taps out to the mask's edge`);
      assert.ok(Math.abs(plan.taps[0] + 2 * plan.taps.slice(1).reduce((a, b) => a + b, 0) - 1) < 1e-12, `${notation}: the blur sums to 1`);
      // centre·x - blur·x is x: a flat picture stays flat.
      assert.ok(Math.abs(plan.centre - plan.blur - 1) < 1e-12, notation);
      // Every weight of the mask is the separable form's: centre·δ - blur·g(u)g(v).
      for (let v = -reach; v <= reach; v++) {
        for (let u = -reach; u <= reach; u++) {
          const separable = (u === 0 && v === 0 ? plan.centre : 0) - plan.blur * plan.taps[Math.abs(u)] * plan.taps[Math.abs(v)];
          const weight = kernel.kernel[(v + reach) * kernel.width + (u + reach)];
          assert.ok(Math.abs(separable - weight) < 1e-12, `${notation} (${u}, ${v}): ${separable} against the mask's ${weight}`);
        }
      }
    }
  });

  it('validates process details given on the command line, naming the flag', () => {
    assert.deepEqual(validateDetails({ sharpen: '0x1', gamma: '1.0', quality: '90' }), { sharpen: '0x1', gamma: 1, quality: 90 });
    assert.deepEqual(validateDetails({ gamma: '.5' }), { gamma: 0.5 }, 'a decimal as people write it');
    assert.deepEqual(validateDetails({ gamma: '2.' }), { gamma: 2 });
    assert.throws(() => validateDetails({ gamma: '1e0' }), /--gamma "1e0": expected a number from 0.1 to 10/);
    assert.throws(() => validateDetails({ gamma: '.' }), /--gamma ".": expected a number from 0.1 to 10/);
    assert.throws(() => validateDetails({ gamma: '0' }), /--gamma "0": expected a number from 0.1 to 10/);
    assert.throws(() => validateDetails({ gamma: 'bright' }), /--gamma "bright": expected a number from 0.1 to 10/);
    assert.throws(() => validateDetails({ quality: '101' }), /--quality "101": expected a number from 1 to 100/);
    assert.throws(() => validateDetails({ quality: '50.5' }), /--quality "50.5": expected a whole number from 1 to 100/);
    const defaults = { sharpen: '0x0.5', gamma: 1, quality: 82 };
    assert.deepEqual(resolveDetails({ sharpen: null, gamma: 1.2000000476837158, quality: null }, defaults), {
      sharpen: '0x0.5',
      gamma: 1.2,
      quality: 82,
      sharpenKernel: sharpenKernel({ radius: 0, sigma: 0.5 }),
      sharpenRoad: { kind: '3x3', mask: threeByThree(sharpenKernel({ radius: 0, sigma: 0.5 })) },
    });
  });

  it('config: presets are the only sizes; a bad default sharpen is a config error', () => {
    const config = thumbnailConfigSchema.parse({});
    assert.deepEqual(Object.keys(config.presets), ['small', 'medium', 'large']);
    assert.deepEqual(config.presets.small, { width: 120, height: 90, mode: 'crop' });
    assert.equal(config.maxPixels, 50_000_000);
    assert.equal(thumbnailConfigSchema.safeParse({ presets: { 'Big Size': { width: 10, height: 10, mode: 'crop' } } }).success, false);
    assert.equal(thumbnailConfigSchema.safeParse({ presets: { big: { width: 100, height: 100, mode: 'stretch' } } }).success, false);
    assert.equal(thumbnailConfigSchema.safeParse({ presets: {} }).success, false);
    const bad = thumbnailConfigSchema.safeParse({ defaults: { sharpen: 'lots' } });
    assert.equal(bad.success, false);
    assert.match(bad.error.issues[0].message, /sharpen "lots": expected RADIUSxSIGMA/);
  });

  it('gives the documented size for each mode', () => {
    const landscape = { width: 1800, height: 1200 };
    assert.deepEqual(presetGeometry(landscape, { width: 120, height: 90, mode: 'crop' }), { width: 120, height: 90, inner: { width: 120, height: 90 } });
    assert.deepEqual(presetGeometry(landscape, { width: 320, height: 240, mode: 'pad' }), { width: 320, height: 240, inner: { width: 320, height: 213 } });
    assert.deepEqual(presetGeometry(landscape, { width: 640, height: 480, mode: 'resize' }), { width: 640, height: 427, inner: { width: 640, height: 427 } });
    const small = { width: 100, height: 50 };
    assert.deepEqual(presetGeometry(small, { width: 640, height: 480, mode: 'resize' }), { width: 100, height: 50, inner: small }, 'resize never enlarges');
    assert.deepEqual(presetGeometry(small, { width: 320, height: 240, mode: 'pad' }), { width: 320, height: 240, inner: { width: 320, height: 160 } });
    assert.deepEqual(presetGeometry(small, { width: 120, height: 90, mode: 'crop' }).inner, { width: 120, height: 90 });
    const presets = Object.values(thumbnailConfigSchema.parse({}).presets);
    assert.deepEqual(workingSize(landscape, presets), { width: 640, height: 427 }, 'decoded once, at the largest size any preset needs');
    assert.deepEqual(workingSize({ width: 1200, height: 1800 }, presets), { width: 320, height: 480 });
    assert.deepEqual(workingSize(small, presets), small, 'never above the original');
    assert.deepEqual(uprightSize({ width: 10, height: 20 }, 6), { width: 20, height: 10 });
    assert.deepEqual(uprightSize({ width: 10, height: 20 }, 3), { width: 10, height: 20 });
  });

  it("a crop's attention search covers at most a few boxes: a strip (1x30000) is cut from its middle, not enlarged whole", () => {
    const box = { width: 120, height: 90, mode: 'crop' } as const;
    const whole = (size: { width: number; height: number }) => ({ left: 0, top: 0, ...size });
    // Ordinary pictures, panoramas included, keep the whole picture for the attention strategy to choose from.
    for (const size of [
      { width: 640, height: 427 },
      { width: 50, height: 40 },
      { width: 900, height: 90 },
      { width: 120, height: 700 },
    ]) {
      assert.deepEqual(cropWindow(size, box), whole(size), `${size.width}x${size.height}`);
    }
    // Covering the box would enlarge a 1x30000 strip to 120x3,600,000 pixels (24 s of attention search for a 30,000-pixel image).
    const tall = cropWindow({ width: 1, height: 30000 }, box);
    assert.deepEqual(tall, { left: 0, top: 14997, width: 1, height: 6 });
    const wide = cropWindow({ width: 30000, height: 1 }, box);
    assert.deepEqual(wide, { left: 14994, top: 0, width: 11, height: 1 });
    for (const [size, window] of [
      [{ width: 1, height: 30000 }, tall],
      [{ width: 30000, height: 1 }, wide],
      [{ width: 7, height: 5000 }, cropWindow({ width: 7, height: 5000 }, box)],
    ] as const) {
      const cover = Math.max(box.width / window.width, box.height / window.height);
      const searched = window.width * cover * window.height * cover;
      assert.ok(searched <= CROP_SEARCH_BOXES * box.width * box.height * 1.5, `${size.width}x${size.height}: ${searched} pixels searched`);
      assert.ok(window.left + window.width <= size.width && window.top + window.height <= size.height);
    }
  });

  it('a decode that fails for want of our own threads, memory or files is not blamed on the image: the error goes on as it was, and the row is given back', () => {
    // The first as libvips said it in a real run with too few threads allowed (prlimit --nproc): it had been charged as corrupt_image.
    const ours = [
      'glib: Error creating thread: Resource temporarily unavailable',
      'vips_tracked: out of memory --- size == 187MB',
      'VipsForeignLoad: Cannot allocate memory',
      'VipsForeignLoad: Too many open files',
    ];
    for (const message of ours) {
      const error = decodeError(new Error(message), Buffer.alloc(0), { timeoutSeconds: 30 });
      assert.ok(!(error instanceof ImageError), `${message}: ${error instanceof ImageError ? error.code : ''}`);
      assert.equal(error.message, message);
    }
    const corrupt = decodeError(new Error('VipsJpeg: Premature end of input file'), Buffer.alloc(0), { timeoutSeconds: 30 });
    assert.ok(corrupt instanceof ImageError && corrupt.code === 'corrupt_image');
  });

  it('classifies by the documented rules, first match wins', () => {
    const rules = thumbnailConfigSchema.parse({}).classes;
    const photo = { original: { width: 1800, height: 1200 }, maxStdev: 60, entropy: 7.5, sameHashListings: 1 };
    assert.equal(classifyImage(photo, rules), 'photo');
    assert.equal(classifyImage({ ...photo, original: { width: 199, height: 1200 } }, rules), 'tiny');
    assert.equal(classifyImage({ ...photo, original: { width: 800, height: 149 } }, rules), 'tiny');
    assert.equal(classifyImage({ ...photo, maxStdev: 5 }, rules), 'placeholder');
    assert.equal(classifyImage({ ...photo, entropy: 0.4 }, rules), 'placeholder');
    assert.equal(classifyImage({ ...photo, entropy: 1.2 }, rules), 'photo', 'a logo of a few flat colours is not blank');
    assert.equal(classifyImage({ ...photo, sameHashListings: 5 }, rules), 'duplicate');
    assert.equal(classifyImage({ ...photo, sameHashListings: 4 }, rules), 'photo');
    assert.equal(classifyImage({ ...photo, maxStdev: 1, sameHashListings: 50 }, rules), 'placeholder');
  });

  it('asks for the count of rows with the same picture only when it can change the class', () => {
    const rules = thumbnailConfigSchema.parse({}).classes;
    const photo = { original: { width: 1800, height: 1200 }, maxStdev: 60, entropy: 7.5 };
    assert.equal(sameHashCountMatters(photo, 1, rules), true);
    assert.equal(sameHashCountMatters(photo, rules.duplicateMinListings - 1, rules), true);
    assert.equal(sameHashCountMatters(photo, rules.duplicateMinListings, rules), false, 'the chunk alone reaches the threshold');
    assert.equal(sameHashCountMatters({ ...photo, original: { width: 32, height: 32 } }, 1, rules), false, 'tiny whatever the count');
    assert.equal(sameHashCountMatters({ ...photo, maxStdev: 1 }, 1, rules), false, 'placeholder whatever the count');
    assert.equal(sameHashCountMatters({ ...photo, entropy: 0.1 }, 1, rules), false, 'placeholder whatever the count');
  });

  it('measures a picture: dominant colour cube, largest channel stdev, grey entropy', () => {
    const flat = new Uint8Array(300).fill(200);
    assert.deepEqual(pictureStats(flat), { dominant: { r: 200, g: 200, b: 200 }, maxStdev: 0, entropy: 0 });
    // Half black, half white: one bit of entropy; the stdev of 0/255 halves; black wins the tie.
    const halves = new Uint8Array(600);
    halves.fill(255, 300);
    const s = pictureStats(halves);
    assert.deepEqual(s.dominant, { r: 8, g: 8, b: 8 });
    assert.equal(s.entropy, 1);
    assert.ok(Math.abs(s.maxStdev - 127.5 * Math.sqrt(200 / 199)) < 1e-9, 'sample stdev of 100 zeros and 100 x 255');
    // Mostly blue with a red corner: blue dominates, only the red and blue channels vary.
    const blue = new Uint8Array(300);
    for (let i = 0; i < 100; i++) blue.set(i < 10 ? [250, 0, 0] : [0, 0, 250], i * 3);
    const b = pictureStats(blue);
    assert.deepEqual(b.dominant, { r: 8, g: 8, b: 248 });
  });

  it('hashes pictures by their gradients, as a signed bigint', () => {
    const ramp = Uint8Array.from({ length: 72 }, (_, i) => 255 - (i % 9) * 20);
    assert.equal(differenceHash(ramp), '-1', 'every pixel brighter than its right neighbour: all 64 bits set');
    assert.equal(differenceHash(new Uint8Array(72)), '0');
    assert.equal(hammingDistance('-1', '0'), 64);
    assert.equal(hammingDistance('5', '4'), 1);
  });

  it('gamma follows ImageMagick: 1 leaves levels alone, above 1 brightens mid-tones, black and white stay', () => {
    assert.deepEqual(
      [...gammaTable(1)],
      Array.from({ length: 256 }, (_, i) => i),
    );
    const bright = gammaTable(2);
    assert.equal(bright[0], 0);
    assert.equal(bright[255], 255);
    assert.equal(bright[64], Math.round(255 * Math.sqrt(64 / 255)));
    assert.ok(gammaTable(0.5)[128] < 128);
  });

  it('sets images in flight and threads from the cores, within the libuv pool', () => {
    assert.deepEqual(parallelismFor({ imagesInFlight: null, sharpThreads: null }, 2, 4), { imagesInFlight: 4, sharpThreads: 1 });
    assert.deepEqual(parallelismFor({ imagesInFlight: null, sharpThreads: null }, 1, 4), { imagesInFlight: 2, sharpThreads: 1 });
    assert.deepEqual(parallelismFor({ imagesInFlight: null, sharpThreads: null }, 16, 4), { imagesInFlight: 4, sharpThreads: 4 });
    assert.deepEqual(parallelismFor({ imagesInFlight: 3, sharpThreads: 2 }, 16, 4), { imagesInFlight: 3, sharpThreads: 2 });
  });
});
