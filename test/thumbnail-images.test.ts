// makeThumbnails on real images: orientation, PngSuite, colour, safety, process details.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { BASELINE_MAX_PIXELS } from '../src/thumbnail/jpeg-options.ts';
import { makePresets } from '../src/thumbnail/make-presets.ts';
import { analysisCopy, cutPreset, decodeOriginal, makeThumbnails, type ThumbnailSettings } from '../src/thumbnail/make-thumbnails.ts';
import { THUMBHASH_MAX_SIDE } from '../src/thumbnail/placeholder.ts';
import { presetGeometry } from '../src/thumbnail/preset-geometry.ts';
import { parseSharpen } from '../src/config/parse-sharpen.ts';
import { separableSharpen, sharpenSeparably } from '../src/thumbnail/separable-sharpen.ts';
import { sharpen3x3, threeByThree } from '../src/thumbnail/sharpen-3x3.ts';
import { sharpenOnRoad, sharpenRoad } from '../src/thumbnail/sharpen-road.ts';
import { sharpenKernel } from '../src/thumbnail/sharpen-kernel.ts';
import { gammaRgbProfile, pngWithProfile, srgbOfLinear } from './helpers/icc-profile.ts';
import { makeTestImages, startImageServer } from './helpers/image-server.ts';
import { rejection, settings, THUMBNAIL_DEFAULTS } from './helpers/thumbnail-settings.ts';
import { BAR_COLOURS, cmykColourBars, EXIF_DIR, HEVC_HEIC, meanAbsDiff, pngSuitePictures, PNGSUITE_DIR, rgbPixels } from './helpers/thumbnail-fixtures.ts';

const config = THUMBNAIL_DEFAULTS;

const jpegOf = (made: Awaited<ReturnType<typeof makeThumbnails>>, preset: string) => made.presets[preset].files[0].data;

describe('thumbnails of real images (sharp)', () => {
  it('turns every EXIF orientation upright (pixels compared with the unrotated photo)', async () => {
    const files = fs.readdirSync(EXIF_DIR).filter((f) => f.endsWith('.jpg'));
    assert.equal(files.length, 18);
    for (const shape of ['Landscape', 'Portrait']) {
      const reference = await makeThumbnails(fs.readFileSync(path.join(EXIF_DIR, `${shape}_1.jpg`)), settings());
      const upright = await rgbPixels(jpegOf(reference, 'large'));
      const mirrored = await rgbPixels(await sharp(jpegOf(reference, 'large')).flop().toBuffer());
      const turned = await rgbPixels(await sharp(jpegOf(reference, 'large')).rotate(180).toBuffer());
      assert.ok(
        meanAbsDiff(upright.data, mirrored.data) > 20 && meanAbsDiff(upright.data, turned.data) > 20,
        'the check can tell a mirrored or turned picture',
      );
      for (const file of files.filter((f) => f.startsWith(shape))) {
        const made = await makeThumbnails(fs.readFileSync(path.join(EXIF_DIR, file)), settings());
        const { width, height } = made.presets.large;
        assert.deepEqual([width, height], shape === 'Landscape' ? [640, 427] : [320, 480], file);
        assert.deepEqual([made.original.width, made.original.height], shape === 'Landscape' ? [1800, 1200] : [1200, 1800], file);
        const pixels = await rgbPixels(jpegOf(made, 'large'));
        const diff = meanAbsDiff(pixels.data, upright.data);
        assert.ok(diff < 6, `${file}: differs from the upright photo by ${diff.toFixed(1)} per sample`);
      }
    }
  });

  it('gives thumbnails of every valid PngSuite image, in the documented sizes, as clean JPEGs (progressive above a 40,000-pixel box)', async () => {
    const valid = fs.readdirSync(PNGSUITE_DIR).filter((f) => f.endsWith('.png') && !f.startsWith('x'));
    assert.ok(valid.length >= 150, `${valid.length} valid images`);
    for (const file of valid) {
      const made = await makeThumbnails(fs.readFileSync(path.join(PNGSUITE_DIR, file)), settings());
      for (const [name, preset] of Object.entries(config.presets)) {
        const out = made.presets[name];
        const expected = presetGeometry({ width: made.original.width, height: made.original.height }, preset);
        assert.deepEqual([out.width, out.height], [expected.width, expected.height], `${file} ${name}`);
        const meta = await sharp(out.files[0].data).metadata();
        assert.equal(meta.format, 'jpeg');
        assert.deepEqual([meta.width, meta.height], [out.width, out.height], `${file} ${name}: the file has the recorded size`);
        assert.equal(meta.space, 'srgb', `${file}: sRGB`);
        assert.equal(meta.channels, 3);
        assert.equal(meta.isProgressive, preset.width * preset.height > BASELINE_MAX_PIXELS, `${file} ${name}: progressive only above the small box`);
      }
      assert.match(made.dominantColor, /^#[0-9a-f]{6}$/);
    }
  });

  it('fails every corrupt PngSuite x*.png as corrupt_image with the reason', async () => {
    const corrupt = fs.readdirSync(PNGSUITE_DIR).filter((f) => f.startsWith('x') && f.endsWith('.png'));
    assert.equal(corrupt.length, 14);
    const reasons = new Map<string, string>();
    for (const file of corrupt) {
      const error = await rejection(makeThumbnails(fs.readFileSync(path.join(PNGSUITE_DIR, file)), settings()));
      assert.equal(error.code, 'corrupt_image', `${file}: ${error.message}`);
      assert.equal(error.retryable, false);
      reasons.set(file, error.message);
    }
    assert.match(reasons.get('xs1n0g01.png')!, /PNG signature is damaged/);
    assert.match(reasons.get('xcrn0g04.png')!, /PNG signature is damaged/);
    assert.match(reasons.get('xc9n2c08.png')!, /colour type 9 is not valid/);
    assert.match(reasons.get('xd3n2c08.png')!, /bit depth 3 is not valid for colour type 2/);
    assert.match(reasons.get('xdtn0g01.png')!, /no IDAT chunk/);
    assert.match(reasons.get('xcsn0g01.png')!, /^CRC error in the IDAT chunk \(decoder: .*libpng read error/);
    assert.match(reasons.get('xhdn0g08.png')!, /^CRC error in the IHDR chunk \(decoder: .*IHDR: CRC error/);
    for (const [file, reason] of reasons) assert.doesNotMatch(reason, /error in tile|Warning treated as error/, file);
  });

  it('gives PNG faults that libvips words as "corrupt header" or "Warning treated as error" a reason a person can act on', async () => {
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#8080c0' } })
      .png()
      .toBuffer();
    const damaged = (edit: (b: Buffer) => void) => {
      const b = Buffer.from(png);
      edit(b);
      return b;
    };
    const cases: Array<[string, Buffer, RegExp]> = [
      // The IHDR's CRC is wrong: libvips says "Warning treated as error due to failOn setting".
      [
        'IHDR CRC',
        damaged((b) => (b[29] ^= 0xff)),
        /^CRC error in the IHDR chunk \(decoder: a decoder warning \(refused by failOn: warning\); IHDR: CRC error\)$/,
      ],
      // A bit depth PNG does not allow: libvips says "Input buffer has corrupt header:" and nothing more.
      [
        'bit depth',
        damaged((b) => {
          b[24] = 3;
          b.writeUInt32BE(crc32(b.subarray(12, 29)), 29);
        }),
        /^IHDR: bit depth 3 is not valid for colour type 2 \(decoder: Input buffer has corrupt header\)$/,
      ],
      // A data chunk cut mid-way in a file that was otherwise sent whole.
      ['cut IDAT', png.subarray(0, png.length - 20), /^PNG ends inside the IDAT chunk \(the file is cut short\)|^CRC error in the IDAT chunk/],
    ];
    for (const [name, bytes, reason] of cases) {
      const error = await rejection(makeThumbnails(bytes, settings()));
      assert.equal(error.code, 'corrupt_image', `${name}: ${error.message}`);
      assert.match(error.message, reason, name);
      assert.doesNotMatch(error.message, /^Input buffer has corrupt header|^Warning treated as error/, name);
    }
  });

  it('converts a CMYK JPEG to sRGB through its profile, with the right colours', async () => {
    for (const embedProfile of [true, false]) {
      const cmyk = await cmykColourBars({ embedProfile });
      const original = await sharp(cmyk).metadata();
      assert.equal(original.space, 'cmyk');
      assert.equal(Boolean(original.icc), embedProfile);
      const large = jpegOf(await makeThumbnails(cmyk, settings()), 'large');
      const meta = await sharp(large).metadata();
      assert.equal(meta.space, 'srgb');
      assert.equal(meta.channels, 3);
      assert.equal(meta.icc, undefined, 'no profile kept: sRGB is the web default');
      const { data, width } = await rgbPixels(large);
      BAR_COLOURS.forEach((expected, bar) => {
        const at = (20 * width + Math.round((bar + 0.5) * (width / 4))) * 3;
        const got = [...data.subarray(at, at + 3)];
        // In-gamut colours survive sRGB -> CMYK -> sRGB through the profile within 30 levels (perceptual intent moves them a little); a naive
        // conversion that ignores the profile (or inverted Adobe CMYK) misses by far more.
        expected.forEach((level, c) =>
          assert.ok(
            Math.abs(got[c] - level) <= 30,
            `${embedProfile ? 'embedded' : 'no'} profile, bar ${bar}: got ${got.join(',')}, expected ${expected.join(',')}`,
          ),
        );
      });
    }
  });

  it('converts 8-bit and 16-bit pictures to sRGB through their embedded profile, with the right colours and no profile left', async () => {
    // A profile whose samples are linear light (sRGB primaries, gamma 1): (200, 100, 50) in it is sRGB's encoding of each.
    const colour = [200, 100, 50];
    const expected = colour.map(srgbOfLinear);
    const [width, height] = [400, 300];
    const samples = (scale: number) => Array.from({ length: width * height * 3 }, (_, i) => colour[i % 3] * scale);
    const pngs = {
      '8-bit': await sharp(Buffer.from(samples(1)), { raw: { width, height, channels: 3 } })
        .png()
        .toBuffer(),
      '16-bit': await sharp(Uint16Array.from(samples(257)), { raw: { width, height, channels: 3 } })
        .toColourspace('rgb16')
        .png()
        .toBuffer(),
    };
    for (const [depth, png] of Object.entries(pngs)) {
      const original = pngWithProfile(png, gammaRgbProfile(1));
      const meta = await sharp(original).metadata();
      assert.ok(meta.icc && meta.depth === (depth === '8-bit' ? 'uchar' : 'ushort'), `${depth}: the original carries the profile`);
      const large = { large: config.presets.large };
      const made = [
        jpegOf(await makeThumbnails(original, settings()), 'large'),
        (await makePresets(original, settings({}, { presets: large }))).presets.large.files[0].data,
      ];
      for (const [road, jpeg] of made.entries()) {
        assert.equal((await sharp(jpeg).metadata()).icc, undefined, 'no profile kept: sRGB is the web default');
        const { data } = await rgbPixels(jpeg);
        const got = [...data.subarray(0, 3)];
        // A 16-bit decode that skipped or botched the profile came out 220,171,129.
        expected.forEach((level, c) =>
          assert.ok(
            Math.abs(got[c] - level) <= 2,
            `${depth}, ${road ? 'makePresets' : 'makeThumbnails'}: got ${got.join(',')}, expected ${expected.join(',')}`,
          ),
        );
      }
    }
    // 10-bit AVIF (as HDR phones save HEIF) with an sRGB profile: the same road; it came out 188,105,61.
    const avif = await sharp(Buffer.from(samples(1)), { raw: { width, height, channels: 3 } })
      .withIccProfile('srgb')
      .avif({ bitdepth: 10, lossless: true })
      .toBuffer();
    assert.equal((await sharp(avif).metadata()).depth, 'ushort');
    const { data } = await rgbPixels(jpegOf(await makeThumbnails(avif, settings()), 'large'));
    colour.forEach((level, c) => assert.ok(Math.abs(data[c] - level) <= 2, `10-bit AVIF: got ${[...data.subarray(0, 3)].join(',')}`));
  });

  it('thumbnails a strip (1x30000 upright, also turned by EXIF): every preset at its size, the crop from its middle', async () => {
    // Blue, with a red band in the middle third of its length: the crop is cut from the middle (cropWindow).
    const length = 30000;
    const strip = Buffer.alloc(length * 3);
    for (let i = 0; i < length; i++) strip.set(i > length / 3 && i < (2 * length) / 3 ? [220, 20, 20] : [20, 20, 220], i * 3);
    const tall = await sharp(strip, { raw: { width: 1, height: length, channels: 3 } })
      .png()
      .toBuffer();
    // Stored wide, shown tall: EXIF orientation 6 on a 30000x1 PNG.
    const turned = await sharp(strip, { raw: { width: length, height: 1, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .png()
      .toBuffer();
    for (const [name, original] of Object.entries({ tall, turned })) {
      const made = await makeThumbnails(original, settings());
      assert.deepEqual([made.original.width, made.original.height], [1, length], name);
      const sizes = Object.fromEntries(Object.entries(made.presets).map(([preset, p]) => [preset, [p.width, p.height]]));
      assert.deepEqual(sizes, { small: [120, 90], medium: [320, 240], large: [1, 480] }, name);
      const small = (await makePresets(original, settings({}, { presets: { small: config.presets.small } }))).presets.small.files[0].data;
      for (const jpeg of [jpegOf(made, 'small'), small]) {
        const { data, width, height } = await rgbPixels(jpeg);
        assert.deepEqual([width, height], [120, 90]);
        const centre = [...data.subarray((45 * 120 + 60) * 3, (45 * 120 + 60) * 3 + 3)];
        assert.ok(centre[0] > 150 && centre[2] < 100, `${name}: the crop shows the red middle, got ${centre.join(',')}`);
      }
    }
  });

  it('refuses what is not an image, and formats we do not take, as unsupported_format', async () => {
    assert.equal((await rejection(makeThumbnails(Buffer.from('<!DOCTYPE html><html></html>'), settings()))).code, 'unsupported_format');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"><rect width="400" height="300"/></svg>');
    const error = await rejection(makeThumbnails(svg, settings()));
    assert.equal(error.code, 'unsupported_format');
    assert.match(error.message, /svg/);
    const truncated = fs.readFileSync(path.join(EXIF_DIR, 'Landscape_1.jpg')).subarray(0, 60_000);
    const cut = await rejection(makeThumbnails(truncated, settings()));
    assert.equal(cut.code, 'corrupt_image');
    assert.ok(cut.message.length > 5, cut.message);
    // Not a damaged file (it was corrupt_image, "source: bad seek to 528; heif: Error while loading plugin"): a
    // compression this build does not decode, said so.
    assert.equal((await sharp(HEVC_HEIC).metadata()).compression, 'hevc');
    const heic = await rejection(makeThumbnails(HEVC_HEIC, settings()));
    assert.equal(heic.code, 'unsupported_format', heic.message);
    assert.match(
      heic.message,
      /^a HEIF image compressed with HEVC \(an iPhone's HEIC\): this build decodes HEIF compressed with AV1 \(AVIF\) only \(decoder: heif: /,
    );
  });

  it('an SVG that points outside (image, use, XInclude, external entity, CSS import, file:) is refused without a single connection', async () => {
    const server = await startImageServer(await makeTestImages());
    try {
      const at = server.url('/good.png');
      const svgs = [
        `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="400" height="300"><image href="${at}" width="400" height="300"/><image xlink:href="${at}" width="9" height="9"/></svg>`,
        `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"><use href="${at}#x"/><style>@import url(${at});</style></svg>`,
        `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xi="http://www.w3.org/2001/XInclude" width="4" height="3"><xi:include href="${at}" parse="text"/></svg>`,
        `<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "${at}">]><svg xmlns="http://www.w3.org/2000/svg" width="4" height="3"><text>&x;</text></svg>`,
        '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="3"><image href="file:///etc/passwd" width="4" height="3"/></svg>',
      ];
      for (const svg of svgs) {
        const error = await rejection(makeThumbnails(Buffer.from(svg), settings()));
        // Refused as SVG, or (the external entity) as XML the parser will not read: either way never drawn.
        assert.ok(['unsupported_format', 'corrupt_image'].includes(error.code), `${error.code}: ${error.message}`);
      }
      assert.equal(server.connections(), 0, 'no request left the thumbnailer');
    } finally {
      await server.close();
    }
  });

  it('flattens transparency on white, takes the first frame of an animation, strips metadata', async () => {
    const clear = await sharp({ create: { width: 400, height: 300, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const flat = await rgbPixels(jpegOf(await makeThumbnails(clear, settings()), 'medium'));
    assert.ok(
      flat.data.every((v) => v > 250),
      'transparent comes out white, not black',
    );

    const frame = (colour: string) =>
      sharp({ create: { width: 400, height: 300, channels: 3, background: colour } })
        .png()
        .toBuffer();
    const gif = await sharp([await frame('#ff0000'), await frame('#0000ff')], { join: { animated: true } })
      .gif()
      .toBuffer();
    assert.equal((await sharp(gif).metadata()).pages, 2);
    const made = await makeThumbnails(gif, settings());
    assert.deepEqual([made.original.width, made.original.height], [400, 300], 'one frame, not the strip of frames');
    const first = await rgbPixels(jpegOf(made, 'small'));
    assert.ok(first.data[0] > 200 && first.data[2] < 60, `red, the first frame: ${[...first.data.subarray(0, 3)].join(',')}`);

    const photo = fs.readFileSync(path.join(EXIF_DIR, 'Landscape_5.jpg'));
    assert.ok((await sharp(photo).metadata()).exif, 'the original carries EXIF');
    const meta = await sharp(jpegOf(await makeThumbnails(photo, settings()), 'large')).metadata();
    assert.equal(meta.exif, undefined);
    assert.equal(meta.icc, undefined);
    assert.equal(meta.orientation, undefined);
  });

  it('no metadata reaches any file, on either road, twins included: EXIF with GPS, XMP, IPTC, ICC, comments', async () => {
    const segment = (marker: number, payload: string) => {
      const head = Buffer.from([0xff, marker, 0, 0]);
      head.writeUInt16BE(payload.length + 2, 2);
      return Buffer.concat([head, Buffer.from(payload, 'latin1')]);
    };
    const tagged = await sharp(fs.readFileSync(path.join(EXIF_DIR, 'Landscape_6.jpg')))
      .withExif({ IFD0: { Make: 'SecretCam', Copyright: 'SecretOwner' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1' } })
      .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">SecretXmp</rdf:RDF></x:xmpmeta>')
      .withIccProfile('p3')
      .jpeg()
      .toBuffer();
    const iptc = segment(0xed, 'Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10\x1c\x02\x78\x00\x0bSecretIptc');
    const original = Buffer.concat([tagged.subarray(0, 2), segment(0xfe, 'SecretComment'), iptc, tagged.subarray(2)]);
    const meta = await sharp(original).metadata();
    assert.ok(meta.exif && meta.xmp && meta.iptc && meta.icc, 'the original carries them all');
    const twins = { ...config.twins, webp: true, avif: true };
    const files = [
      ...Object.values((await makeThumbnails(original, settings({}, { twins }))).presets),
      ...(await Promise.all(
        Object.entries(config.presets).map(
          async ([name, preset]) => (await makePresets(original, settings({}, { twins, presets: { [name]: preset } }))).presets[name],
        ),
      )),
    ].flatMap((p) => p.files);
    assert.equal(files.length, 18);
    for (const file of files) {
      const out = await sharp(file.data).metadata();
      assert.deepEqual([out.exif, out.xmp, out.iptc, out.icc, out.comments], [undefined, undefined, undefined, undefined, undefined], file.ext);
      const text = file.data.toString('latin1');
      for (const word of ['Secret', 'GPS', 'Exif', 'ICC_PROFILE', '8BIM', 'xmpmeta']) assert.ok(!text.includes(word), `${file.ext}: ${word} in the bytes`);
    }
  });

  it('quality, gamma and sharpen visibly change the output', async () => {
    const photo = fs.readFileSync(path.join(EXIF_DIR, 'Landscape_1.jpg'));
    const plain = await makeThumbnails(photo, settings());
    const low = await makeThumbnails(photo, settings({ quality: 30 }));
    const high = await makeThumbnails(photo, settings({ quality: 95 }));
    assert.ok(
      jpegOf(low, 'large').length * 2 < jpegOf(high, 'large').length,
      `quality 30: ${jpegOf(low, 'large').length} bytes, 95: ${jpegOf(high, 'large').length}`,
    );

    const mean = async (image: Buffer) => (await sharp(image).stats()).channels.slice(0, 3).reduce((s, c) => s + c.mean, 0) / 3;
    const brighter = await makeThumbnails(photo, settings({ gamma: 1.8 }));
    const darker = await makeThumbnails(photo, settings({ gamma: 0.6 }));
    const base = await mean(jpegOf(plain, 'large'));
    assert.ok((await mean(jpegOf(brighter, 'large'))) > base + 20, 'gamma 1.8 brightens');
    assert.ok((await mean(jpegOf(darker, 'large'))) < base - 15, 'gamma 0.6 darkens');

    const sharpened = await makeThumbnails(photo, settings({ sharpen: '0x1.5' }));
    const edges = async (image: Buffer) => {
      const { data, width } = await rgbPixels(image);
      let sum = 0;
      for (let i = 3; i < data.length; i++) if (i % (width * 3) >= 3) sum += Math.abs(data[i] - data[i - 3]);
      return sum / data.length;
    };
    const [soft, crisp] = [await edges(jpegOf(plain, 'large')), await edges(jpegOf(sharpened, 'large'))];
    assert.ok(crisp > soft * 1.15, `sharpen 0x1.5 strengthens edges: ${soft.toFixed(2)} -> ${crisp.toFixed(2)}`);
  });

  it("sharpens exactly as ImageMagick's -sharpen does (the old system's look), within one level", async function () {
    this.timeout(20_000);
    // Debian's ImageMagick (the README's test command installs it); not whatever else is first on PATH.
    const magick = '/usr/bin/convert';
    assert.ok(fs.existsSync(magick), `${magick} (Debian's imagemagick package) is needed for this comparison`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-sharpen-'));
    try {
      const input = path.join(dir, 'in.png');
      await sharp(path.join(EXIF_DIR, 'Landscape_1.jpg')).resize(640).png().toFile(input);
      const before = await sharp(input).removeAlpha().raw().toBuffer();
      for (const notation of ['0x0.5', '0x1', '2x1.5']) {
        const output = path.join(dir, `im-${notation}.png`);
        execFileSync(magick, [input, '-sharpen', notation, output]);
        const theirs = await sharp(output).removeAlpha().raw().toBuffer();
        const spec = parseSharpen(notation);
        const kernel = sharpenKernel(spec)!;
        const whole = await sharp(input).removeAlpha().convolve(kernel).raw().toBuffer();
        // The daemon's road for the mask, where it has one (sharpen-road.ts), is held to ImageMagick as well.
        const road = sharpenRoad(spec, kernel);
        const roads: Array<[string, Buffer]> = [['convolve', whole]];
        if (road) roads.push([road.kind, sharpenOnRoad(road, before, await sharp(input).metadata(), 3)]);
        for (const [road, ours] of roads) {
          let sum = 0;
          let max = 0;
          for (let i = 0; i < ours.length; i++) {
            const d = Math.abs(ours[i] - theirs[i]);
            sum += d;
            max = Math.max(max, d);
          }
          assert.ok(max <= 1 && sum / ours.length < 0.05, `${notation} (${road}): mean ${(sum / ours.length).toFixed(3)}, max ${max} levels from ImageMagick`);
        }
        assert.deepEqual(
          roads.map(([name]) => name),
          { '0x0.5': ['convolve', '3x3'], '0x1': ['convolve', 'separable'], '2x1.5': ['convolve', 'separable'] }[notation],
        );
        assert.ok(meanAbsDiff(before, theirs) > 1, `${notation} changes the picture, so the comparison means something`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sharpens with a 3x3 mask through WebAssembly: what convolve() gives, but for float rounding, at every size down to a pixel', async function () {
    this.timeout(60_000);
    const kernel = sharpenKernel(parseSharpen('0x0.5'))!;
    const mask = threeByThree(kernel)!;
    const pictures: Array<{ pixels: Buffer; width: number; height: number; channels: number }> = [];
    const photo = path.join(EXIF_DIR, 'Landscape_1.jpg');
    // Preset sizes, and the small and odd ones where the edges are most of the picture (the SIMD loop takes eight samples at a time).
    for (const [width, height] of [
      [640, 427],
      [320, 240],
      [120, 90],
      [9, 7],
      [3, 3],
      [1, 9],
      [9, 1],
      [2, 2],
      [1, 1],
    ] as const) {
      pictures.push({ pixels: await sharp(photo).resize(width, height, { fit: 'fill' }).raw().toBuffer(), width, height, channels: 3 });
    }
    pictures.push({ pixels: await sharp(photo).resize(33, 17, { fit: 'fill' }).greyscale().raw().toBuffer(), width: 33, height: 17, channels: 1 });
    pictures.push(...(await pngSuitePictures(/^(basn2|basn6|f0|s0|s3)/)));
    let samples = 0;
    let differing = 0;
    for (const { pixels, width, height, channels } of pictures) {
      const raw = { raw: { width, height, channels: channels as 1 | 3 } };
      // sharp hands a one-band picture back as sRGB: its first band is the grey one.
      const convolved = await (channels === 1 ? sharp(pixels, raw).convolve(kernel).extractChannel(0) : sharp(pixels, raw).convolve(kernel)).raw().toBuffer();
      const ours = sharpen3x3(pixels, { width, height }, channels, mask);
      assert.equal(ours.length, convolved.length);
      for (let i = 0; i < ours.length; i++) {
        const d = Math.abs(convolved[i] - ours[i]);
        assert.ok(d <= 1, `${width}x${height}x${channels}: sample ${i} is ${ours[i]} against convolve()'s ${convolved[i]}`);
        if (d) differing++;
      }
      samples += ours.length;
    }
    assert.ok(samples > 1_000_000 && differing / samples < 1e-4, `${differing} of ${samples} samples one level off`);
    // Every flat level stays, as with convolve().
    const levels = Buffer.alloc(256 * 5 * 3);
    for (let level = 0; level < 256; level++) levels.fill(level, level * 15, (level + 1) * 15);
    const flat = sharpen3x3(levels, { width: 1, height: 256 * 5 }, 3, mask);
    for (let level = 0; level < 256; level++) assert.equal(flat[(level * 5 + 2) * 3], level, `flat level ${level}`);
  });

  it("a preset of the working picture's own size is sharpened from its pixels as they are: the same bytes as through a pipeline", async () => {
    const decoded = await decodeOriginal(fs.readFileSync(path.join(EXIF_DIR, 'Landscape_5.jpg')), settings({ sharpen: '0x0.5' }));
    const { working, raw, upright } = decoded;
    const own = { width: working.size.width, height: working.size.height, mode: 'resize' as const };
    for (const sharpen of ['0x0.5', '0x1', 'none']) {
      const s = settings({ sharpen });
      const [asIs, piped] = await Promise.all([
        cutPreset(() => sharp(working.pixels, raw), working.size, upright, own, s, { workingPicture: true, pixels: working.pixels }),
        cutPreset(() => sharp(working.pixels, raw), working.size, upright, own, s, { workingPicture: true }),
      ]);
      assert.ok(asIs.files[0].data.equals(piped.files[0].data), `${sharpen}: the same JPEG`);
    }
  });

  it("sharpens with a wide mask through a Gaussian blur's two passes: what convolve() gives, but for float rounding", async function () {
    this.timeout(60_000);
    // Pictures as cutPreset shapes them: photos at preset sizes, PngSuite's colour ones at their own size.
    const photos = ['Landscape_1.jpg', 'Portrait_5.jpg', 'Landscape_7.jpg'].map((name) => path.join(EXIF_DIR, name));
    const pictures: Array<{ pixels: Buffer; width: number; height: number }> = [];
    for (const [file, width, height] of photos.flatMap(
      (f) =>
        [
          [f, 640, 427],
          [f, 120, 90],
        ] as const,
    )) {
      pictures.push({ pixels: await sharp(file).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer(), width, height });
    }
    pictures.push(...(await pngSuitePictures(/^(basn2|basn6|f0|s3)/)));
    for (const notation of ['0x0.8', '0x1', '0x1.5', '3x1.5', '0x3']) {
      const spec = parseSharpen(notation);
      const kernel = sharpenKernel(spec)!;
      const plan = separableSharpen(spec, kernel);
      assert.ok(plan, `${notation} (a ${kernel.width}x${kernel.width} mask) goes the separable road`);
      let samples = 0;
      let differing = 0;
      for (const { pixels, width, height } of pictures) {
        const raw = { raw: { width, height, channels: 3 as const } };
        const convolved = await sharp(pixels, raw).convolve(kernel).raw().toBuffer();
        const separable = sharpenSeparably(pixels, { width, height }, 3, plan);
        for (let i = 0; i < convolved.length; i++) {
          const d = Math.abs(convolved[i] - separable[i]);
          assert.ok(d <= 1, `${notation}, ${width}x${height}: sample ${i} is ${separable[i]} against convolve()'s ${convolved[i]}`);
          if (d) differing++;
        }
        samples += convolved.length;
      }
      assert.ok(samples > 2_000_000 && differing / samples < 1e-4, `${notation}: ${differing} of ${samples} samples one level off`);
    }
    // A flat picture stays flat at every level, as with convolve(): float rounding must not darken it by one.
    for (const notation of ['0x0.8', '0x1', '0x1.2', '0x2', '0x3', '0x5', '0x10', '4x1.7']) {
      const spec = parseSharpen(notation);
      const kernel = sharpenKernel(spec)!;
      const plan = separableSharpen(spec, kernel)!;
      assert.ok(plan, notation);
      // A band of each level, one pixel wide, twice as tall as the mask plus a margin: its middle is out of its neighbours' reach.
      const band = 2 * kernel.width + 2;
      const levels = Buffer.alloc(256 * band * 3);
      for (let level = 0; level < 256; level++) levels.fill(level, level * band * 3, (level + 1) * band * 3);
      const flat = sharpenSeparably(levels, { width: 1, height: band * 256 }, 3, plan);
      for (let level = 0; level < 256; level++) {
        const at = (level * band + band / 2) * 3;
        assert.equal(flat[at], level, `${notation}: flat level ${level}`);
      }
    }
  });

  it('makes WebP and AVIF twins when switched on', async () => {
    const photo = fs.readFileSync(path.join(EXIF_DIR, 'Portrait_1.jpg'));
    const made = await makeThumbnails(photo, settings({}, { twins: { webp: true, avif: true, webpQuality: null, avifQuality: 50 } }));
    for (const out of Object.values(made.presets)) {
      assert.deepEqual(
        out.files.map((f) => f.ext),
        ['jpg', 'webp', 'avif'],
      );
      for (const file of out.files.slice(1)) {
        const meta = await sharp(file.data).metadata();
        assert.deepEqual([meta.width, meta.height], [out.width, out.height]);
      }
    }
    assert.equal((await sharp(made.presets.small.files[1].data).metadata()).format, 'webp');
    assert.equal((await sharp(made.presets.small.files[2].data).metadata()).format, 'heif');
  });
  it('makePresets (a lis_imaged miss) makes the very bytes makeThumbnails makes for the same presets, without the analyses', async () => {
    const twins = { webp: true, avif: true, webpQuality: null, avifQuality: 50 };
    // One pipeline (8-bit, no gamma, no twins; the header from image_data or read), and makeThumbnails' road (gamma,
    // twins, a 16-bit PNG); a record of other bytes is not trusted.
    const cases: Array<[string, ThumbnailSettings, 'record' | 'stale record' | 'record of a JPEG, PNG bytes' | 'header']> = [
      [path.join(EXIF_DIR, 'Landscape_1.jpg'), settings({ sharpen: '0x0.5' }), 'header'],
      [path.join(EXIF_DIR, 'Portrait_5.jpg'), settings({ sharpen: '0x1' }), 'record'],
      [path.join(EXIF_DIR, 'Landscape_3.jpg'), settings({}), 'stale record'],
      [path.join(EXIF_DIR, 'Portrait_6.jpg'), settings({ sharpen: '0x1.5', gamma: 1.4, quality: 70 }), 'record'],
      [path.join(EXIF_DIR, 'Landscape_8.jpg'), settings({}, { twins }), 'header'],
      [path.join(PNGSUITE_DIR, 'basn6a16.png'), settings({ sharpen: '0x0.5' }), 'header'],
      // A record that says JPEG, of the right length, for bytes that are not one: the header is read (format check, real size).
      [path.join(PNGSUITE_DIR, 'basn2c08.png'), settings({ sharpen: '0x0.5' }), 'record of a JPEG, PNG bytes'],
    ];
    for (const [file, base, header] of cases) {
      const photo = fs.readFileSync(file);
      const recorded = (await makeThumbnails(photo, base)).original;
      const known =
        header === 'record'
          ? recorded
          : header === 'stale record'
            ? { ...recorded, width: 7, bytes: photo.length + 1 }
            : header === 'record of a JPEG, PNG bytes'
              ? { ...recorded, format: 'jpeg', width: 640, height: 480 }
              : undefined;
      // One preset at a time, as lis_imaged asks: the working size is that preset's alone.
      for (const [name, preset] of Object.entries(config.presets)) {
        const one = { ...base, presets: { [name]: preset } };
        const [full, lean] = await Promise.all([makeThumbnails(photo, one), makePresets(photo, one, { known })]);
        assert.deepEqual(lean.original, full.original, `${file} ${name}`);
        assert.deepEqual(Object.keys(lean.presets), [name]);
        const [a, b] = [full.presets[name], lean.presets[name]];
        assert.deepEqual([b.width, b.height], [a.width, a.height], `${file} ${name}`);
        assert.deepEqual(
          b.files.map((f) => f.ext),
          a.files.map((f) => f.ext),
        );
        a.files.forEach((f, i) => assert.ok(b.files[i].data.equals(f.data), `${file} ${name}.${f.ext}: the same bytes`));
      }
      // And with every preset at once (lis_thumbnaild's call): the same working picture, so the same files.
      const [full, lean] = await Promise.all([makeThumbnails(photo, base), makePresets(photo, base)]);
      for (const name of Object.keys(config.presets))
        assert.ok(lean.presets[name].files[0].data.equals(full.presets[name].files[0].data), `${file} all ${name}`);
      assert.equal('thumbHash' in lean || 'contentHash' in lean, false, 'no analysis');
    }
  });
  it("the analyses' ThumbHash copy: a picture inside its size is used as it is, with the very pixels sharp's fit would give; a larger one is fitted", async () => {
    // Noise, so any resampling at all would move pixels; sizes at, under and over the copy's side.
    const sizes = [
      [32, 32],
      [THUMBHASH_MAX_SIDE, 60],
      [THUMBHASH_MAX_SIDE, THUMBHASH_MAX_SIDE],
      [THUMBHASH_MAX_SIDE + 1, 40],
      [640, 427],
    ];
    for (const [width, height] of sizes) {
      const pixels = Buffer.from(Array.from({ length: width * height * 3 }, (_, i) => (i * 7919 + ((i * i) % 251)) % 256));
      const raw = { raw: { width, height, channels: 3 as const } };
      const viaSharp = await sharp(pixels, raw)
        .resize(THUMBHASH_MAX_SIDE, THUMBHASH_MAX_SIDE, { fit: 'inside', withoutEnlargement: true })
        .raw()
        .toBuffer({ resolveWithObject: true });
      const copy = await analysisCopy({ pixels, size: { width, height } }, raw);
      assert.deepEqual([copy.info.width, copy.info.height], [viaSharp.info.width, viaSharp.info.height], `${width}x${height}`);
      assert.ok(copy.data.equals(viaSharp.data), `${width}x${height}: the same pixels`);
      assert.ok(Math.max(copy.info.width, copy.info.height) <= THUMBHASH_MAX_SIDE);
    }
  });
});
