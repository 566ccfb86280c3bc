import { errorMessage } from '../errors.ts';
import { diagnosePng } from './png-diagnosis.ts';

/**
 * libvips' message, made readable: one line, each distinct complaint once,
 * without the per-tile echoes and the failOn boilerplate that say nothing an
 * operator can act on. Pure.
 */
export function cleanDecoderMessage(error: unknown): string {
  const parts = errorMessage(error)
    .split(/\n/)
    .map((p) => p.replace(/\s+/g, ' ').replace(/:\s*$/, '').trim())
    .filter((p) => p && !/^error in tile \d+ x \d+$/i.test(p));
  const seen = new Set<string>();
  const kept: string[] = [];
  for (const part of parts) {
    // "Warning treated as error due to failOn setting" tells which setting, not what is wrong: the rest says that.
    const text = /^Warning treated as error due to failOn setting$/i.test(part) ? 'a decoder warning (refused by failOn: warning)' : part;
    if (!seen.has(text)) kept.push(text);
    seen.add(text);
  }
  return kept.join('; ') || 'unknown decoder error';
}

/**
 * What a person reads when the decoder refuses an image: our structural
 * diagnosis first where we have one (libvips often says only "corrupt
 * header"), then the decoder's own words.
 */
export function decoderWords(error: unknown, bytes: Buffer): string {
  const message = cleanDecoderMessage(error);
  const diagnosis = diagnosePng(bytes);
  return diagnosis ? `${diagnosis} (decoder: ${message})` : message;
}

/**
 * libvips' words when the machine, not the image, ran short: a thread it could not start (seen with too
 * few threads allowed), memory it could not get for a picture within thumbnail.maxPixels, file
 * descriptors. Not the image's fault, so never an ImageError (which would charge the row, and for
 * corrupt_image fail it for good and count against its datasource).
 */
const OUT_OF_OUR_RESOURCES = /error creating thread|out of memory --- size ==|cannot allocate memory|too many open files/i;

/** Whether a decoder's error is the machine's shortage (see OUT_OF_OUR_RESOURCES), not the image's fault. */
export function isOurShortage(error: unknown): boolean {
  return OUT_OF_OUR_RESOURCES.test(errorMessage(error));
}
