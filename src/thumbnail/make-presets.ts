import sharp from 'sharp';
import type { Preset } from '../config/thumbnail-config.ts';
import { ImageError } from './image-error.ts';
import {
  cutPreset,
  decodeError,
  decoderInput,
  makeThumbnailsWithoutAnalysis,
  readHeader,
  WHITE,
  type AdmitPixels,
  type Header,
  type Presets,
  type ThumbnailSettings,
  type Thumbnails,
} from './make-thumbnails.ts';
import { decodeCost } from './pixel-budget.ts';
import { workingSize } from './preset-geometry.ts';

export interface MakePresetsOptions {
  /** Waits for room for a decode's pixels (see PixelBudget). */
  admit?: AdmitPixels;
  /**
   * What lis_thumbnaild recorded of this original (image_data.original). When
   * it describes these very bytes (same length, a JPEG), the header is taken
   * from it instead of read again: one sharp call fewer per lis_imaged miss.
   * The decoder's own pixel limit still applies.
   */
  known?: Thumbnails['original'];
}

/**
 * Makes the presets in `settings` exactly as makeThumbnails does (the same
 * bytes: test/thumbnail-images.test.ts), but skips the SHA-256 and the
 * analyses: a row past thumbnailing already has them in its image_data, and a
 * single-preset miss in lis_imaged should not pay for them again. Throws ImageError.
 *
 * One preset of an 8-bit picture with no gamma and no twins (a lis_imaged miss,
 * as configured by default) is made in one libvips pipeline, from the original
 * straight to the JPEG, as a plain resizer would: no raw working copy between
 * two pipelines. That gives the same bytes, since the working size of one
 * preset is that preset's own size; 16-bit pictures do not (the working copy is
 * 8-bit), nor does a gamma curve (applied to the working copy), so they take
 * makeThumbnails' road. So does a crop preset: from the working picture its attention offset is found without
 * libvips' smartcrop (attention-crop.ts), which costs more than the raw copy between the two pipelines saves
 * (a 120x90 crop of an 1800x1200 photo: 9.0-10.6 ms of CPU against 12.4-14.6 in one pipeline, the same bytes).
 */
export async function makePresets(original: Buffer, settings: ThumbnailSettings, options: MakePresetsOptions = {}): Promise<Presets> {
  const header = headerFromRecord(original, options.known) ?? (await readHeader(original, settings));
  const presets = Object.entries(settings.presets);
  const only = presets.length === 1 ? presets[0] : null;
  if (!only || only[1].mode === 'crop' || settings.details.gamma !== 1 || header.depth !== 'uchar' || settings.twins.webp || settings.twins.avif)
    return makeThumbnailsWithoutAnalysis(original, settings, header, options.admit);
  const [name, preset] = only;
  return {
    original: { width: header.upright.width, height: header.upright.height, format: header.format, bytes: original.length },
    presets: { [name]: await onePipeline(original, header, preset, settings, options.admit) },
  };
}

/** A JPEG's first bytes (SOI and the next marker's FF). */
const JPEG_MAGIC = Buffer.from([0xff, 0xd8, 0xff]);

/**
 * The header image_data recorded, when it is these bytes' (same length, and they start as a JPEG does, so a
 * record never lets another format past the format check) and a JPEG's (always 8-bit); else null, and the
 * header is read.
 */
function headerFromRecord(original: Buffer, known: Thumbnails['original'] | undefined): Header | null {
  if (known?.format !== 'jpeg' || known.bytes !== original.length || !(known.width > 0 && known.height > 0)) return null;
  if (!original.subarray(0, JPEG_MAGIC.length).equals(JPEG_MAGIC)) return null;
  // A JPEG is 8-bit, so whether it has a profile does not change its road (decoderPipeline).
  return { format: known.format, upright: { width: known.width, height: known.height }, depth: 'uchar', hasProfile: false };
}

async function onePipeline(original: Buffer, header: Header, preset: Preset, settings: ThumbnailSettings, admit?: AdmitPixels) {
  const target = workingSize(header.upright, [preset]);
  const release = admit ? await admit(decodeCost({ format: header.format, ...header.upright }, target)) : null;
  try {
    const input = () =>
      sharp(original, decoderInput(settings))
        .timeout({ seconds: Math.ceil(settings.timeoutSeconds) })
        .flatten({ background: WHITE })
        .toColourspace('srgb')
        .removeAlpha();
    return await cutPreset(input, header.upright, header.upright, preset, settings);
  } catch (error) {
    throw error instanceof ImageError ? error : decodeError(error, original, settings);
  } finally {
    release?.();
  }
}
