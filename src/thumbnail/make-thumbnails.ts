import crypto from 'node:crypto';
import sharp, { type Metadata, type Sharp, type SharpOptions } from 'sharp';
import type { Preset, ThumbnailConfig } from '../config/thumbnail-config.ts';
import { attentionOffset, rawInput } from './attention-crop.ts';
import { applyGamma } from './gamma-curve.ts';
import { decoderFailure, ImageError } from './image-error.ts';
import { jpegOptions } from './jpeg-options.ts';
import { decodeCost } from './pixel-budget.ts';
import { DHASH_HEIGHT, DHASH_WIDTH, differenceHash } from './perceptual-hash.ts';
import { pictureStats } from './picture-stats.ts';
import { sharpenOnRoad, type SharpenRoad } from './sharpen-road.ts';
import { hexColour, THUMBHASH_MAX_SIDE, thumbHashOf } from './placeholder.ts';
import { cropWindow, presetGeometry, uprightSize, workingSize, type Size } from './preset-geometry.ts';
import type { ResolvedDetails } from './process-details.ts';

/** Formats we decode. Others (SVG, PDF, ...) are refused: a listing photo is none of them, and they can reach outside. */
export const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif']);

export type TwinFormat = 'webp' | 'avif';

export interface ThumbnailSettings {
  presets: Record<string, Preset>;
  details: ResolvedDetails;
  twins: ThumbnailConfig['twins'];
  maxPixels: number;
  timeoutSeconds: number;
  failOn: ThumbnailConfig['failOn'];
}

export interface PresetOutput {
  width: number;
  height: number;
  /** The JPEG, then the twins switched on. */
  files: Array<{ ext: 'jpg' | TwinFormat; data: Buffer }>;
}

export interface Thumbnails {
  original: { width: number; height: number; format: string; bytes: number };
  /** SHA-256 hex of the original's bytes. */
  contentHash: string;
  presets: Record<string, PresetOutput>;
  dominantColor: string;
  thumbHash: string;
  /** dHash, signed 64-bit decimal. */
  perceptualHash: string;
  /** For classify-image: largest channel stdev and grey entropy of the picture. */
  maxStdev: number;
  entropy: number;
}

/** Waits for room for the pixels one decode holds; resolves to its release (see PixelBudget). */
export type AdmitPixels = (pixels: number) => Promise<() => void>;

export const WHITE = { r: 255, g: 255, b: 255 };

/** The decoded picture every preset is cut from: upright, sRGB, flattened on white, 8-bit, 3 channels. */
export interface Working {
  pixels: Buffer;
  size: Size;
}

/**
 * Makes every preset of one original. The original is decoded once, shrunk on
 * load to the largest size any preset needs (`workingSize`), turned upright,
 * converted to sRGB through its ICC profile (CMYK included), flattened on
 * white, and held as raw pixels; each preset (and the analysis: colour,
 * ThumbHash, dHash, stats) is derived from that. Throws ImageError.
 * With `admit`, the decode waits for room for its pixels (judged from the
 * header) and gives them back once the working picture is made: the decode is
 * where memory peaks; what follows holds only the working size.
 */
export async function makeThumbnails(original: Buffer, settings: ThumbnailSettings, admit?: AdmitPixels): Promise<Thumbnails> {
  const contentHash = crypto.createHash('sha256').update(original).digest('hex');
  const decoded = await decodeOriginal(original, settings, admit);
  const [presets, analysis] = await Promise.all([derivePresets(decoded, settings), analyse(decoded.working, decoded.raw)]);
  return { original: decoded.original, contentHash, presets, ...analysis };
}

/** The presets alone, with no hash and no analysis: what a row that already has them lacks (see make-presets.ts). */
export type Presets = Pick<Thumbnails, 'original' | 'presets'>;

/** makeThumbnails' road without the SHA-256 and the analyses, from a header already read. */
export async function makeThumbnailsWithoutAnalysis(original: Buffer, settings: ThumbnailSettings, header: Header, admit?: AdmitPixels): Promise<Presets> {
  const decoded = await decodeOriginal(original, settings, admit, header);
  return { original: decoded.original, presets: await derivePresets(decoded, settings) };
}

/** An original decoded to the working picture, gamma applied, with what the presets and analyses need of it. */
export interface Decoded {
  working: Working;
  raw: RawInput;
  upright: Size;
  original: Thumbnails['original'];
}

/** The decoder's input options: the first frame, upright, read sequentially, our failOn and pixel limit. */
export function decoderInput(settings: Pick<ThumbnailSettings, 'failOn' | 'maxPixels'>) {
  return { failOn: settings.failOn, limitInputPixels: settings.maxPixels, autoOrient: true, sequentialRead: true, pages: 1, page: 0 } as const;
}

/** What the header says of an original: its format, upright size and sample depth. */
export interface Header {
  format: string;
  upright: Size;
  /** libvips' band format: `uchar` is 8-bit. */
  depth: string;
  /** An ICC profile is embedded (it matters only to a 16-bit picture: see decoderPipeline). */
  hasProfile: boolean;
}

/** Reads and judges the header (format, size, pixel limit), before a single pixel is decoded: a bomb costs next to nothing. */
export async function readHeader(original: Buffer, settings: Pick<ThumbnailSettings, 'failOn' | 'maxPixels'>): Promise<Header> {
  let header: Metadata;
  try {
    // The limit is ours to judge below, from the header, with a reason that gives the numbers.
    header = await sharp(original, { ...decoderInput(settings), limitInputPixels: false }).metadata();
  } catch (error) {
    throw decoderFailure(error, original);
  }
  if (!header.format || !SUPPORTED_FORMATS.has(header.format)) {
    throw new ImageError('unsupported_format', `unsupported image format: ${header.format ?? 'unknown'}`);
  }
  if (!header.width || !header.height) throw new ImageError('corrupt_image', 'the header gives no width or height');
  const pixelCount = header.width * header.height;
  if (pixelCount > settings.maxPixels) {
    throw new ImageError(
      'too_many_pixels',
      `${header.width}x${header.height} is ${(pixelCount / 1e6).toFixed(1)} megapixels, over the limit of ${(settings.maxPixels / 1e6).toFixed(1)}`,
    );
  }
  // With pages: 1, the header's height is the first frame's.
  return {
    format: header.format,
    upright: uprightSize({ width: header.width, height: header.height }, header.orientation),
    depth: header.depth ?? 'uchar',
    hasProfile: Boolean(header.icc),
  };
}

/** Header checks (format, size, pixel limit), then the one decode to the working picture every preset is cut from. */
export async function decodeOriginal(original: Buffer, settings: ThumbnailSettings, admit?: AdmitPixels, header?: Header): Promise<Decoded> {
  const input = decoderInput(settings);
  const known = header ?? (await readHeader(original, settings));
  const { format, upright } = known;
  const target = workingSize(upright, Object.values(settings.presets));
  const release = admit ? await admit(decodeCost({ format, ...upright }, target)) : null;
  let working: Working;
  try {
    working = await decodeWorking(original, input, target, settings, known);
  } finally {
    release?.();
  }
  applyGamma(working.pixels, settings.details.gamma);

  const raw = { raw: { width: working.size.width, height: working.size.height, channels: 3 as const } };
  return { working, raw, upright, original: { width: upright.width, height: upright.height, format, bytes: original.length } };
}

/**
 * The decoder's pipeline for `original`, on the colour road to sRGB. sharp converts a 16-bit RGB picture
 * with a profile to Display P3, its working space for 16-bit (sharp 0.35, pipeline.cc), and
 * toColourspace('srgb') then changes only the depth, so P3 numbers came out as sRGB: linear-light
 * (200,100,50) gave 220,171,130 where 229,168,122 is right, an sRGB-tagged picture lost saturation
 * (200,100,50 became 187,105,61). Worked in 8-bit sRGB it is converted to sRGB, and every thumbnail is
 * 8-bit anyway. Other pictures keep sharp's road: theirs is right, and their pixels (so the hashes
 * stored of them) stay as they were. (A 16-bit grey picture's profile is not applied at all: sharp
 * skips it, on either road.)
 */
export function decoderPipeline(original: Buffer, input: SharpOptions, header: Pick<Header, 'depth' | 'hasProfile'>): Sharp {
  const pipeline = sharp(original, input);
  return header.depth !== 'uchar' && header.hasProfile ? pipeline.pipelineColourspace('srgb') : pipeline;
}

async function decodeWorking(original: Buffer, input: SharpOptions, target: Size, settings: ThumbnailSettings, header: Header): Promise<Working> {
  try {
    const { data, info } = await decoderPipeline(original, input, header)
      .timeout({ seconds: Math.ceil(settings.timeoutSeconds) })
      .resize(target.width, target.height, { fit: 'fill' })
      .flatten({ background: WHITE })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new ImageError('corrupt_image', `decoded to ${info.channels} channels, expected 3`);
    return { pixels: data, size: { width: info.width, height: info.height } };
  } catch (error) {
    throw decodeError(error, original, settings);
  }
}

/**
 * What a failed decode throws: the decoder's words as an ImageError, and for a timeout which setting ran
 * out; a shortage of our own (threads, memory) as it was (decoderFailure), for the row to be given back.
 */
export function decodeError(error: unknown, original: Buffer, settings: Pick<ThumbnailSettings, 'timeoutSeconds'>): Error {
  const imageError = decoderFailure(error, original);
  if (!(imageError instanceof ImageError) || imageError.code !== 'processing_timeout') return imageError;
  // libvips words it "timeout: 4% complete" among seek errors from the aborted read; say which setting ran out.
  const progress = /timeout: \d+% complete/.exec(imageError.message)?.[0] ?? imageError.message;
  return new ImageError('processing_timeout', `not decoded within ${Math.ceil(settings.timeoutSeconds)} s (thumbnail.timeoutSeconds); libvips: ${progress}`, {
    cause: error,
  });
}

export type RawInput = { raw: { width: number; height: number; channels: 3 } };

async function derivePresets({ working, raw, upright }: Decoded, settings: ThumbnailSettings): Promise<Record<string, PresetOutput>> {
  const entries = await Promise.all(
    Object.entries(settings.presets).map(async ([name, preset]) => [name, await derivePreset(working, raw, upright, preset, settings)] as const),
  );
  return Object.fromEntries(entries);
}

function derivePreset(working: Working, raw: RawInput, upright: Size, preset: Preset, settings: ThumbnailSettings): Promise<PresetOutput> {
  return cutPreset(() => sharp(working.pixels, raw), working.size, upright, preset, settings, { workingPicture: true, pixels: working.pixels });
}

/**
 * One preset from pipelines whose input is the picture (upright, sRGB, on
 * white, `picture` pixels; `input` makes a new one) of an original of
 * `upright` pixels: the preset's geometry (a crop from `cropWindow`), the datasource's
 * sharpening, then the JPEG and any twins, one pipeline per encoder. Not
 * sharp's clone(): it structuredClone()s the options, input buffer included,
 * a copy of the whole working picture (or original) per file. The sharpen mask is
 * applied once, to raw pixels the encoders share, on a cheaper road than
 * convolve() with the same arithmetic (sharpen-road.ts).
 */
export async function cutPreset(
  input: () => Sharp,
  picture: Size,
  upright: Size,
  preset: Preset,
  settings: ThumbnailSettings,
  options: CutOptions = {},
): Promise<PresetOutput> {
  const geometry = presetGeometry(upright, preset);
  // From the working picture, a crop is cut at an offset found once (cutAtAttention); else each pipeline finds it.
  const atAttention = preset.mode === 'crop' && options.workingPicture ? await cutAtAttention(input, picture, preset) : null;
  const shape = (pipeline: Sharp): Sharp => {
    if (preset.mode === 'crop') return cropSearchWindow(pipeline, picture, preset).resize(preset.width, preset.height, { fit: 'cover', position: 'attention' });
    const inner = pipeline.resize(geometry.inner.width, geometry.inner.height, { fit: 'fill' });
    if (preset.mode !== 'pad') return inner;
    const left = Math.floor((geometry.width - geometry.inner.width) / 2);
    const top = Math.floor((geometry.height - geometry.inner.height) / 2);
    return inner.extend({
      left,
      right: geometry.width - geometry.inner.width - left,
      top,
      bottom: geometry.height - geometry.inner.height - top,
      background: WHITE,
    });
  };
  const shaped = (): Sharp => (atAttention ? atAttention() : shape(input()));
  const { sharpenKernel, sharpenRoad: road } = settings.details;
  // A preset of the picture's own size (the largest 'resize' preset, usually) needs no shaping: its pixels are the picture's.
  const asIs = preset.mode !== 'crop' && sameSize(geometry, picture) && sameSize(geometry.inner, picture) ? options.pixels : undefined;
  // A mask with a cheaper road than convolve() (sharpen-road.ts) is applied once, for all the encoders.
  const cut = road
    ? await sharpenedOnce(shaped, road, asIs && { data: asIs, info: { ...picture, channels: 3 as const } })
    : (): Sharp => (sharpenKernel ? shaped().convolve(sharpenKernel) : shaped());
  const { quality } = settings.details;
  const encoders: Array<['jpg' | TwinFormat, () => Sharp]> = [['jpg', () => cut().jpeg(jpegOptions(quality, preset.width * preset.height))]];
  if (settings.twins.webp) encoders.push(['webp', () => cut().webp({ quality: settings.twins.webpQuality ?? quality, effort: 4 })]);
  if (settings.twins.avif) encoders.push(['avif', () => cut().avif({ quality: settings.twins.avifQuality, effort: 3 })]);
  const files = await Promise.all(encoders.map(async ([ext, encoder]) => ({ ext, data: await encoder().toBuffer() })));
  return { width: geometry.width, height: geometry.height, files };
}

const sameSize = (a: Size, b: Size) => a.width === b.width && a.height === b.height;

/**
 * The shaped preset as raw pixels (`asIs`: they are already, with no pipeline to copy them), sharpened on
 * `road`; pipelines from those pixels for the encoders.
 */
async function sharpenedOnce(shaped: () => Sharp, road: SharpenRoad, asIs?: { data: Buffer; info: Size & { channels: 3 } }): Promise<() => Sharp> {
  const { data, info } = asIs ?? (await shaped().raw().toBuffer({ resolveWithObject: true }));
  const sharpened = sharpenOnRoad(road, data, info, info.channels);
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  return () => sharp(sharpened, raw);
}

export interface CutOptions {
  /**
   * `input()` gives the working picture (8-bit sRGB, 3 channels), so a crop preset's attention offset is
   * found by attentionOffset instead of libvips' smartcrop, once for all its files: the same offset and
   * bytes, for less CPU (docs/benchmarks.md, "Thumbnails: where the time goes"). Not for an original's own pipeline
   * (makePresets' one pipeline): libvips would search the decoded original, grey or colour, before
   * the conversion to sRGB.
   */
  workingPicture?: boolean;
  /**
   * The working picture's own pixels (8-bit sRGB, 3 channels, `picture` in size), when the caller has them: a
   * preset of that very size is sharpened from them, without a pipeline that would only copy them.
   */
  pixels?: Buffer;
}

/** The input cut to the part a crop may search (cropWindow), when that is not the whole picture. */
function cropSearchWindow(pipeline: Sharp, picture: Size, box: Size): Sharp {
  const window = cropWindow(picture, box);
  return window.width !== picture.width || window.height !== picture.height ? pipeline.extract(window) : pipeline;
}

/**
 * What sharp's resize(box, { fit: 'cover', position: 'attention' }) does, in two steps: scale to cover
 * the box (fit 'outside' scales exactly as 'cover' does, without its crop) into raw pixels, find the
 * attention offset there (attentionOffset), and give pipelines that cut the box out of those pixels.
 */
async function cutAtAttention(input: () => Sharp, picture: Size, box: Size): Promise<() => Sharp> {
  // The box's own shape (a 4:3 picture in a 4:3 box): 'cover' scales both sides by the same factor 'fill'
  // computes for each, and there is nothing to crop, so one pipeline makes it (libvips' smartcrop would
  // still search the picture, and find the only offset there is).
  if (picture.width * box.height === picture.height * box.width) return () => input().resize(box.width, box.height, { fit: 'fill' });
  const { data, info } = await cropSearchWindow(input(), picture, box)
    .resize(box.width, box.height, { fit: 'outside' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const cover = { data, size: { width: info.width, height: info.height } };
  const { left, top } = await attentionOffset(cover, box);
  return () => sharp(data, rawInput(cover)).extract({ left, top, width: box.width, height: box.height });
}

/**
 * Colour, placeholder and the class facts from one ThumbHash-sized copy of the
 * picture: at 100 px they are as good as at 640 and cost a tenth (stats over
 * the working size took as long as a preset). Small pictures are not enlarged for it.
 */
async function analyse(working: Working, raw: RawInput): Promise<Pick<Thumbnails, 'dominantColor' | 'thumbHash' | 'perceptualHash' | 'maxStdev' | 'entropy'>> {
  const [small, grey] = await Promise.all([
    analysisCopy(working, raw),
    // From the working size, not the small copy: a second downscale first moves the flat-area bits.
    sharp(working.pixels, raw).resize(DHASH_WIDTH, DHASH_HEIGHT, { fit: 'fill' }).greyscale().raw().toBuffer(),
  ]);
  const stats = pictureStats(small.data);
  return {
    dominantColor: hexColour(stats.dominant),
    thumbHash: thumbHashOf(small.info.width, small.info.height, withOpaqueAlpha(small.data)),
    perceptualHash: differenceHash(firstChannel(grey, DHASH_WIDTH * DHASH_HEIGHT)),
    maxStdev: stats.maxStdev,
    entropy: stats.entropy,
  };
}

/**
 * The ThumbHash-sized copy: the picture fitted inside THUMBHASH_MAX_SIDE, never enlarged. A picture
 * already inside it (most PngSuite-sized images) is its own copy: sharp would hand back the same pixels,
 * for a pipeline's fixed cost (~0.3-0.4 ms, 2 % of such an image's thumbnails).
 */
export async function analysisCopy(working: Working, raw: RawInput): Promise<{ data: Buffer; info: Size }> {
  const { width, height } = working.size;
  if (width <= THUMBHASH_MAX_SIDE && height <= THUMBHASH_MAX_SIDE) return { data: working.pixels, info: { width, height } };
  return sharp(working.pixels, raw)
    .resize(THUMBHASH_MAX_SIDE, THUMBHASH_MAX_SIDE, { fit: 'inside', withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
}

/** RGB to RGBA, opaque: the picture is already flattened on white. */
function withOpaqueAlpha(rgb: Buffer): Uint8Array {
  const rgba = new Uint8Array((rgb.length / 3) * 4).fill(255);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgba[j] = rgb[i];
    rgba[j + 1] = rgb[i + 1];
    rgba[j + 2] = rgb[i + 2];
  }
  return rgba;
}

/** sharp's greyscale raw output may still carry three equal channels; take one. */
function firstChannel(data: Buffer, pixels: number): Uint8Array {
  if (data.length === pixels) return data;
  const step = data.length / pixels;
  return Uint8Array.from({ length: pixels }, (_, i) => data[i * step]);
}
