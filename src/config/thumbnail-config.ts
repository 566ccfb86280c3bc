import * as z from 'zod';
import { errorMessage } from '../errors.ts';
import { parseSharpen } from './parse-sharpen.ts';

/** Preset names end up in file names (`<hash>_<name>.jpg`), so they are short lower-case words. */
export const PRESET_NAME = /^[a-z][a-z0-9]{0,15}$/;

/** How a preset fits the picture into its box; see src/thumbnail/preset-geometry.ts for the exact sizes. */
export const PRESET_MODES = ['resize', 'crop', 'pad'] as const;
export type PresetMode = (typeof PRESET_MODES)[number];

const side = z.number().int().min(8).max(4096);

export const presetSchema = z.strictObject({
  width: side,
  height: side,
  /**
   * `resize`: fit inside the box, never enlarged (the box is a maximum);
   * `crop`: fill the box exactly, cutting what overflows where the picture is least interesting (attention);
   * `pad`: fit inside the box, then centre on a white canvas of exactly the box size.
   */
  mode: z.enum(PRESET_MODES),
});
export type Preset = z.infer<typeof presetSchema>;

const DEFAULT_PRESETS: Record<string, Preset> = {
  small: { width: 120, height: 90, mode: 'crop' },
  medium: { width: 320, height: 240, mode: 'pad' },
  large: { width: 640, height: 480, mode: 'resize' },
};

export const thumbnailConfigSchema = z.strictObject({
  /** The only sizes that exist: nobody can ask for another. */
  presets: z
    .record(z.string().regex(PRESET_NAME, 'a preset name: a lower-case letter, then up to 15 letters or digits'), presetSchema)
    .refine((p) => Object.keys(p).length > 0, 'at least one preset')
    .default(DEFAULT_PRESETS),
  /** Process details a datasource does not set for itself (`lis datasource set`). */
  defaults: z
    .strictObject({
      /** ImageMagick `RADIUSxSIGMA` (`0x1`: radius from sigma 1); `0x0` or `none`: no sharpening. */
      sharpen: z
        .string()
        .superRefine((value, ctx) => {
          try {
            parseSharpen(value, 'sharpen');
          } catch (error) {
            ctx.addIssue({ code: 'custom', message: errorMessage(error) });
          }
        })
        .default('0x0.5'),
      /** 1.0 = unchanged; above 1 brightens the mid-tones, below darkens (ImageMagick's -gamma). */
      gamma: z.number().min(0.1).max(10).default(1.0),
      /** JPEG quality, 1-100. */
      quality: z.number().int().min(1).max(100).default(82),
    })
    .prefault({}),
  /** Extra formats of every preset, beside the JPEG. */
  twins: z
    .strictObject({
      webp: z.boolean().default(false),
      avif: z.boolean().default(false),
      /** WebP quality; null: the datasource's JPEG quality. */
      webpQuality: z.number().int().min(1).max(100).nullable().default(null),
      /** AVIF quality: its scale is not JPEG's (50 looks about like JPEG 80). */
      avifQuality: z.number().int().min(1).max(100).default(50),
    })
    .prefault({}),
  /** Originals with more pixels (width x height, read from the header before decoding) are refused: decompression bombs. */
  maxPixels: z.number().int().positive().default(50_000_000),
  /**
   * Decoded pixels held at once over all images in flight (read from each header before decoding; a JPEG
   * counts after its shrink on load). An image bigger than this runs alone: serialised, not refused.
   */
  pixelBudget: z.number().int().positive().default(25_000_000),
  /** One image's decoding and resizing may take this long; then `processing_timeout`. */
  timeoutSeconds: z.number().positive().max(600).default(30),
  /**
   * When libvips gives up on damaged pixel data: `warning` (strictest: any CRC or
   * decoder warning fails the image), `error`, `truncated`, `none`.
   */
  failOn: z.enum(['none', 'truncated', 'error', 'warning']).default('warning'),
  /** Images worked at once; null: twice the cores (os.availableParallelism()), at most UV_THREADPOOL_SIZE (default 4): see parallelismFor. */
  imagesInFlight: z.number().int().min(1).max(256).nullable().default(null),
  /** libvips threads per image (sharp.concurrency); null: cores / images in flight (1 unless libuv's pool is the limit). */
  sharpThreads: z.number().int().min(1).max(256).nullable().default(null),
  /** How images are classified (`image_class`); rows a person classified are never changed. */
  classes: z
    .strictObject({
      /** `tiny`: an original narrower or lower than this (upright pixels). */
      tinyWidth: z.number().int().min(0).default(200),
      tinyHeight: z.number().int().min(0).default(150),
      /** `placeholder`: every channel's standard deviation below this (0-255): a near-uniform picture. */
      uniformMaxStdev: z.number().min(0).default(6),
      /** `placeholder`: grey-level entropy below this (bits, 0-8): a near-blank picture, e.g. a white page saying "no photo". */
      blankMaxEntropy: z.number().min(0).max(8).default(0.5),
      /** `duplicate`: the same perceptual hash on at least this many rows of one datasource (this one included). */
      duplicateMinListings: z.number().int().min(2).default(5),
    })
    .prefault({}),
});

export type ThumbnailConfig = z.infer<typeof thumbnailConfigSchema>;
