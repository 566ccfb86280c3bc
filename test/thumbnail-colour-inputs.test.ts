import assert from 'node:assert/strict';
import sharp, { type Color } from 'sharp';
import { thumbnailConfigSchema } from '../src/config/thumbnail-config.ts';
import { makeThumbnails, type ThumbnailSettings } from '../src/thumbnail/make-thumbnails.ts';
import { resolveDetails } from '../src/thumbnail/process-details.ts';

const config = thumbnailConfigSchema.parse({});
const settings: ThumbnailSettings = {
  presets: config.presets,
  details: resolveDetails({ sharpen: 'none', gamma: 1, quality: 90 }, config.defaults),
  twins: config.twins,
  maxPixels: config.maxPixels,
  timeoutSeconds: config.timeoutSeconds,
  failOn: config.failOn,
};

const W = 300;
const H = 200;
type Rgb = [number, number, number];
const RED = { r: 200, g: 30, b: 40 };
const GREY = { r: 128, g: 128, b: 128 };
const plain = (background: Color, channels: 3 | 4 = 3) => sharp({ create: { width: W, height: H, channels, background } });

/** Inputs rare on a listing feed but met: each must give upright 8-bit sRGB JPEGs of the colour it shows. */
const INPUTS: Array<{ name: string; make: () => Promise<Buffer>; shows: Rgb }> = [
  { name: 'greyscale JPEG', make: () => plain(GREY).greyscale().jpeg().toBuffer(), shows: [128, 128, 128] },
  {
    name: 'grey and alpha PNG (half transparent, on white)',
    make: () =>
      plain({ ...GREY, alpha: 0.5 }, 4)
        .greyscale()
        .png()
        .toBuffer(),
    shows: [192, 192, 192],
  },
  { name: '16-bit greyscale PNG', make: () => plain(GREY).greyscale().toColourspace('grey16').png().toBuffer(), shows: [128, 128, 128] },
  { name: 'palette PNG', make: () => plain(RED).png({ palette: true }).toBuffer(), shows: [200, 30, 40] },
  { name: 'CIELAB TIFF', make: () => plain(RED).toColourspace('lab').tiff().toBuffer(), shows: [200, 30, 40] },
  { name: '16-bit RGB TIFF', make: () => plain(RED).toColourspace('rgb16').tiff().toBuffer(), shows: [200, 30, 40] },
  { name: 'floating-point scRGB TIFF', make: () => plain(RED).toColourspace('scrgb').tiff().toBuffer(), shows: [200, 30, 40] },
  { name: 'JPEG-compressed TIFF', make: () => plain(RED).tiff({ compression: 'jpeg' }).toBuffer(), shows: [200, 30, 40] },
  { name: '1-bit TIFF (black)', make: () => plain({ r: 0, g: 0, b: 0 }).toColourspace('b-w').tiff({ bitdepth: 1 }).toBuffer(), shows: [0, 0, 0] },
  { name: 'Display P3 JPEG (its profile converted)', make: () => plain(RED).withIccProfile('p3').jpeg({ quality: 95 }).toBuffer(), shows: [200, 30, 40] },
  { name: '10-bit AVIF', make: () => plain(RED).avif({ bitdepth: 10, lossless: true }).toBuffer(), shows: [200, 30, 40] },
  { name: 'greyscale AVIF', make: () => plain(GREY).greyscale().avif({ lossless: true }).toBuffer(), shows: [128, 128, 128] },
  {
    name: 'WebP with alpha (30 % opaque, on white)',
    make: () =>
      plain({ ...RED, alpha: 0.3 }, 4)
        .webp({ lossless: true })
        .toBuffer(),
    shows: [238, 188, 191],
  },
];

/** The mean colour of the picture's middle half: a pad preset's white borders left out. */
async function meanRgb(jpeg: Buffer): Promise<Rgb> {
  const { width, height } = await sharp(jpeg).metadata();
  const middle = { left: Math.floor(width / 4), top: Math.floor(height / 4), width: Math.floor(width / 2), height: Math.floor(height / 2) };
  // stats() reads its input, not the pipeline's output: the middle is cut out first.
  const { channels } = await sharp(await sharp(jpeg).extract(middle).toBuffer()).stats();
  return [channels[0].mean, channels[1].mean, channels[2].mean];
}

describe('thumbnails of rare colour inputs', () => {
  for (const input of INPUTS) {
    it(`${input.name}: 8-bit sRGB JPEGs of its colour, no profile left`, async () => {
      const made = await makeThumbnails(await input.make(), settings);
      for (const [preset, { files }] of Object.entries(made.presets)) {
        const meta = await sharp(files[0].data).metadata();
        assert.deepEqual([meta.format, meta.space, meta.channels, meta.depth, meta.icc], ['jpeg', 'srgb', 3, 'uchar', undefined], preset);
        const got = await meanRgb(files[0].data);
        for (const [i, level] of got.entries()) {
          assert.ok(Math.abs(level - input.shows[i]) <= 4, `${preset}: ${got.map(Math.round).join(',')} where ${input.shows.join(',')} shows`);
        }
      }
    });
  }
});
