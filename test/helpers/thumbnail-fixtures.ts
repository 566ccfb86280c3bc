import fs from 'node:fs';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { sql } from 'kysely';
import sharp from 'sharp';
import type { LisConfig } from '../../src/config/config-schema.ts';
import type { Db } from '../../src/db/connect.ts';
import { runDaemon, type RunTotals, type StageWorker } from '../../src/daemon/run-daemon.ts';
import { closeLogger, createLogger } from '../../src/log/create-logger.ts';
import { originalPath } from '../../src/store/store-layout.ts';
import { createThumbnailWorker } from '../../src/thumbnail/thumbnail-worker.ts';
import { ROOT } from './processes.ts';

/** The shared test images, beside the checkout (or where LIS_TESTDATA says: a worktree lives elsewhere). */
export const TESTDATA = path.resolve(process.env.LIS_TESTDATA ?? path.resolve(ROOT, '../shared/testdata'));
export const EXIF_DIR = path.join(TESTDATA, 'exif-orientation');
export const PNGSUITE_DIR = path.join(TESTDATA, 'pngsuite/png');

export interface ThumbnailRowSpec {
  url: string;
  datasourceId?: number;
  /** The original's bytes, placed where lis_downloadd would have stored them; omitted: no file. */
  original?: Buffer;
  humanClassified?: boolean;
  imageClass?: string;
}

/** Rows waiting in the thumbnail stage, with their originals in the store (as lis_downloadd leaves them). */
export async function insertThumbnailRows(
  db: Db,
  config: LisConfig,
  country: string,
  specs: ThumbnailRowSpec[],
): Promise<Array<{ id: string; image_hash: string; url: string }>> {
  const out = [];
  for (const spec of specs) {
    const row = await db
      .insertInto('live_images')
      .values({
        country,
        datasource_id: spec.datasourceId ?? 1,
        image_url: spec.url,
        stage: 'thumbnail',
        // lis_downloadd records the host whose store holds the original; later stages claim only their host's rows.
        store_host: config.stores.shared ? '' : config.host,
        human_classified: spec.humanClassified ?? false,
        image_class: spec.imageClass ?? null,
      })
      .returning(['id', 'image_hash'])
      .executeTakeFirstOrThrow();
    if (spec.original) {
      const file = originalPath(config, country, row.image_hash);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, spec.original);
    }
    out.push({ ...row, url: spec.url });
  }
  return out;
}

/**
 * Works the thumbnail stage in this process with the real worker and runner, until no rows are left. `wrap`: the
 * worker as the runner gets it (a test's hook around the real one, e.g. a fault between chunks).
 */
export async function runThumbnailStage(
  db: Db,
  config: LisConfig,
  url: string,
  country = 'uk',
  wrap: (worker: StageWorker) => StageWorker = (worker) => worker,
): Promise<RunTotals> {
  const log = createLogger({ component: 'thumbnaild', log: config.log, screen: false, country });
  try {
    return await runDaemon(wrap(createThumbnailWorker({ config, db })), {
      config,
      db,
      databaseUrl: url,
      log,
      country,
      chunkSize: config.queue.chunkSize,
      service: false,
      signal: new AbortController().signal,
      workerId: `test:${process.pid}`,
    });
  } finally {
    await closeLogger(log);
  }
}

export async function rowsByUrl(db: Db): Promise<
  Map<
    string,
    {
      stage: string;
      state: string;
      image_class: string | null;
      image_data: Record<string, unknown> | null;
      last_error: string | null;
      last_error_class: string | null;
      attempts: number;
      perceptual_hash: string | null;
      next_attempt_at: Date;
    }
  >
> {
  const rows = await db
    .selectFrom('live_images')
    .select(['image_url', 'stage', 'state', 'image_class', 'image_data', 'last_error', 'last_error_class', 'attempts', 'perceptual_hash', 'next_attempt_at'])
    .execute();
  return new Map(rows.map((r) => [r.image_url, r]));
}

/** A PNG chunk with its length and CRC. */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

/** A decompression bomb: a PNG of a few dozen bytes whose header declares `width` x `height` pixels. */
export function pixelBombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1024))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Four colour bars (brick red, leaf green, steel blue, mid grey: colours a print
 * profile can hold), 400x300, saved as a CMYK JPEG: with the CMYK profile
 * embedded, as print workflows leave them, or without (`embedProfile: false`).
 */
export async function cmykColourBars(options: { embedProfile?: boolean } = {}): Promise<Buffer> {
  const png = await sharp(colourBarsRgb(), { raw: { width: 400, height: 300, channels: 3 } })
    .png()
    .toBuffer();
  const pipeline = options.embedProfile === false ? sharp(png).toColourspace('cmyk') : sharp(png).withIccProfile('cmyk');
  return pipeline.jpeg({ quality: 95 }).toBuffer();
}

export const BAR_COLOURS = [
  [170, 60, 50],
  [70, 140, 70],
  [60, 90, 160],
  [128, 128, 128],
] as const;

function colourBarsRgb(): Buffer {
  const pixels = Buffer.alloc(400 * 300 * 3);
  for (let y = 0; y < 300; y++) {
    for (let x = 0; x < 400; x++) pixels.set(BAR_COLOURS[Math.floor(x / 100)], (y * 400 + x) * 3);
  }
  return pixels;
}

/** A flat picture (a "no photo" stand-in), `width` x `height`. */
export function flatJpeg(width: number, height: number, colour = { r: 200, g: 200, b: 200 }): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } })
    .jpeg()
    .toBuffer();
}

/** A white page with a short black bar: near-blank, but not uniform. */
export function nearBlankPng(): Promise<Buffer> {
  return sharp({ create: { width: 800, height: 600, channels: 3, background: '#ffffff' } })
    .composite([{ input: { create: { width: 160, height: 30, channels: 3, background: '#000000' } }, left: 320, top: 285 }])
    .png()
    .toBuffer();
}

/** A made-up agency logo: stripes and a circle, different enough from any photo. */
export function logoPng(): Promise<Buffer> {
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="600" height="400"><rect width="600" height="400" fill="#1d3f8a"/>` +
    `<rect y="150" width="600" height="40" fill="#f2c200"/><circle cx="300" cy="200" r="110" fill="#e8e8e8"/><rect x="240" y="60" width="30" height="280" fill="#c2185b"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** Mean absolute difference per sample of two same-sized 8-bit buffers. */
export function meanAbsDiff(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) throw new RangeError(`meanAbsDiff: ${a.length} vs ${b.length} samples`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

/** Raw RGB pixels of an encoded image, optionally resized to a common size for comparing. */
export async function rgbPixels(image: Buffer, size?: { width: number; height: number }): Promise<{ data: Buffer; width: number; height: number }> {
  let pipeline = sharp(image).removeAlpha().toColourspace('srgb');
  if (size) pipeline = pipeline.resize(size.width, size.height, { fit: 'fill' });
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

export async function countLiveImages(db: Db): Promise<number> {
  const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images`.execute(db);
  return Number(rows[0].n);
}

/** PngSuite images whose names match `names`, flattened on white as 8-bit sRGB raw pixels (what a preset is cut from). */
export async function pngSuitePictures(names: RegExp): Promise<Array<{ pixels: Buffer; width: number; height: number; channels: 3 }>> {
  const pictures: Array<{ pixels: Buffer; width: number; height: number; channels: 3 }> = [];
  for (const name of fs.readdirSync(PNGSUITE_DIR).filter((f) => names.test(f))) {
    const { data, info } = await sharp(path.join(PNGSUITE_DIR, name))
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    pictures.push({ pixels: data, width: info.width, height: info.height, channels: 3 });
  }
  return pictures;
}

/**
 * A 16x16 red HEIF compressed with HEVC, as an iPhone's HEIC is (made by Debian's heif-enc, libheif 1.15 with x265,
 * `heif-enc -q 10 red16.png`): its header reads, and sharp's libheif, AV1 only, cannot decode it.
 */
export const HEVC_HEIC = Buffer.from(
  'AAAAHGZ0eXBoZWljAAAAAG1pZjFoZWljbWlhZgAAAaxtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAA' +
    'AA5waXRtAAAAAAACAAAAEGlkYXQAAAAAABAAEAAAADhpbG9jAQAAAERAAAIAAQAAAAAAAAHQAAEAAAAAAAAAPwACAAEAAAAAAAAA' +
    'AQAAAAAAAAAIAAAAOGlpbmYAAAAAAAIAAAAVaW5mZQIAAAEAAQAAaHZjMQAAAAAVaW5mZQIAAAAAAgAAZ3JpZAAAAADXaXBycAAA' +
    'ALVpcGNvAAAAdWh2Y0MBBAgAAAAAAAAAAAAe8AD8/fr6AAAPAyAAAQAXQAEMAf//BAgAAAMAnbgAAAMAAB66AkAhAAEAKkIBAQQI' +
    'AAADAJ24AAADAAAeoCCBBNluqumubgQEDAgAAAMACAAAAwAIQCIAAQAGRAHBc8GJAAAAFGlzcGUAAAAAAAAAQAAAAEAAAAAUaXNw' +
    'ZQAAAAAAAAAQAAAAEAAAABBwaXhpAAAAAAMKCgoAAAAaaXBtYQAAAAAAAAACAAECgQIAAgIDhAAAABppcmVmAAAAAAAAAA5kaW1n' +
    'AAIAAQABAAAAR21kYXQAAAA7KAGvBBIXECT5V/72FsUW5cl+Xp3NaHC/xpa/4ypcDKJQzyv/HpmBE1wRX0fD0x2oo2i/XZGBwLmg' +
    '5+Y=',
  'base64',
);
