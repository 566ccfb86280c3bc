import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { decoderWords } from '../image/decoder-words.ts';

/**
 * Whether the decoder reads a downloaded file without a warning: the judge of
 * a complete transfer whose structure looked unfinished (a GIF without its
 * trailer byte, a PNG whose IEND type is mangled, a JPEG ending FF C9), which
 * are often perfectly readable. Decodes through shrink-on-load to a tiny size,
 * so every byte of image data is read but little memory is used. Null: it
 * reads; else the decoder's words (and our PNG diagnosis). Pixel limits are
 * not its business: the thumbnailer applies thumbnail.maxPixels.
 */
export async function decoderVerdict(file: string): Promise<string | null> {
  try {
    await sharp(file, { failOn: 'warning', limitInputPixels: false, sequentialRead: true, pages: 1 }).resize(8, 8, { fit: 'inside' }).raw().toBuffer();
    return null;
  } catch (error) {
    return decoderWords(error, await readFile(file).catch(() => Buffer.alloc(0)));
  }
}
