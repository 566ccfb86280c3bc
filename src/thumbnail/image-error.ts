import { LisError } from '../errors.ts';
import { cleanDecoderMessage, decoderWords, isOurShortage } from '../image/decoder-words.ts';
import { diagnosePng } from '../image/png-diagnosis.ts';

/** Stable failure classes of the thumbnail stage (`last_error_class`). */
export type ImageErrorClass =
  | 'original_missing'
  | 'corrupt_image'
  | 'too_many_pixels'
  | 'processing_timeout'
  | 'unsupported_format'
  | 'store_write_failed'
  | 'store_path_failed'
  | 'store_read_failed'
  | 'store_paused'
  | 'bad_process_details';

/** Retrying helps: the store may come back, a busy machine may be faster next time, a disk may be freed. */
const RETRYABLE: ReadonlySet<ImageErrorClass> = new Set([
  'original_missing',
  'processing_timeout',
  'store_write_failed',
  'store_path_failed',
  'store_read_failed',
  'store_paused',
]);

/** Why one image could not be thumbnailed; `code` is the row's error class. */
export class ImageError extends LisError {
  declare readonly code: ImageErrorClass;
  readonly retryable: boolean;
  constructor(code: ImageErrorClass, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ImageError';
    this.retryable = RETRYABLE.has(code);
  }
}

/** What a failed decode throws: our own shortage (isOurShortage) as it was, for the row to be given back; else the ImageError. */
export function decoderFailure(error: unknown, original: Buffer): Error {
  if (error instanceof Error && !(error instanceof ImageError) && isOurShortage(error)) return error;
  return imageErrorFromDecoder(error, original);
}

/**
 * Turns what libvips threw while decoding `original` into an ImageError with the
 * decoder's own words, and ours where its are empty (damaged PNG structure).
 */
export function imageErrorFromDecoder(error: unknown, original: Buffer): ImageError {
  if (error instanceof ImageError) return error;
  const message = cleanDecoderMessage(error);
  if (/pixel limit/i.test(message)) return new ImageError('too_many_pixels', message, { cause: error });
  if (/timeout/i.test(message)) return new ImageError('processing_timeout', message, { cause: error });
  if (/unsupported image format/i.test(message) && !diagnosePng(original)) return new ImageError('unsupported_format', message, { cause: error });
  const codec = missingCodec(message);
  if (codec) return new ImageError('unsupported_format', codec, { cause: error });
  return new ImageError('corrupt_image', decoderWords(error, original), { cause: error });
}

/**
 * libheif without a decoder for the file's compression: sharp's own libheif decodes AV1 (AVIF) only, so a HEIF
 * compressed with HEVC, the HEIC an iPhone takes, is read (its header is fine) and then cannot be decoded. Not a
 * damaged file: it was corrupt_image, "source: bad seek to ...; heif: Error while loading plugin", telling the
 * operator the image was broken. Pure: the reason, or null when the decoder's words are not that.
 */
export function missingCodec(message: string): string | null {
  const words = message.split('; ').find((part) => /compression format has not been built in/i.test(part));
  if (!words) return null;
  const codec = /built in: (\w+)/i.exec(words)?.[1] ?? 'its compression';
  const known = codec.toUpperCase() === 'HEVC' ? " (an iPhone's HEIC)" : '';
  return `a HEIF image compressed with ${codec}${known}: this build decodes HEIF compressed with AV1 (AVIF) only (decoder: ${words})`;
}
