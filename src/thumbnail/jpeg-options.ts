import type { JpegOptions } from 'sharp';

/** A preset whose box has at most this many pixels is a baseline JPEG: smaller and cheaper than progressive there. */
export const BASELINE_MAX_PIXELS = 40_000;

/**
 * The one JPEG encoder setting of every thumbnail (and of the benchmarks'
 * plain sharp loop, so that both make the same files): mozjpeg's trellis
 * quantisation, overshoot deringing and quantisation table (ImageMagick's
 * "ImageMagick" table, 3), optimised Huffman coding; progressive above
 * BASELINE_MAX_PIXELS, where a picture that shows coarse first is worth it,
 * without mozjpeg's search of scan layouts (at 640x480 it cost 40% more CPU
 * for files 1.1% smaller: bench/thumbnail.ts, 18 photos at quality 82, 22.7
 * against 16.2 ms per file). Baseline at or below it: at 120x90 baseline is
 * 1.9% smaller and 36% cheaper (1.5 against 2.3 ms per file) than progressive
 * even with the scan search, which was kept there before for its 8%. Judged on
 * the preset's box (width x height as configured), so that anyone can make the same file.
 *
 * Table 3 is kept on measurement (issue 17; 18 photos, 640x480 at quality 82, SSIM of the luma against
 * the bench's lossless reference, bytes over ImageMagick's read off its curve at equal SSIM, encoder
 * CPU per file from raw pixels): today 0.885 at SSIM 0.9666, 17.2 ms. The other tables move the look
 * of a quality: at 82, tables 1, 7 and 8 reach 0.77-0.79 only by making files 44-71 % bigger (SSIM
 * 0.980-0.985) for 46-108 % more CPU; compared curve to curve at today's SSIM, 0 and 2 give 0.877 and
 * 0.880, 4 and 5 0.92 and 0.91, 8 0.85, 7 0.83 (quality 57: 5.7 % smaller for the same CPU, but only by
 * redefining every configured quality). 4:4:4 costs 24 % more bytes (1.09) for a luma SSIM that does not
 * move; trellis is worth 10 % (0.98 without it) for 12 ms; deringing changes nothing on photos; scan
 * search at 640x480 1 % for +40 % CPU. So no setting sharp exposes gets to 0.8 at the configured look.
 * Sharpening is most of today's lead: with sharpen 0x0 on both sides table 3 is at 0.98 (7 at 0.90).
 * Pure.
 */
export function jpegOptions(quality: number, boxPixels: number): JpegOptions {
  return {
    quality,
    progressive: boxPixels > BASELINE_MAX_PIXELS,
    trellisQuantisation: true,
    overshootDeringing: true,
    quantisationTable: 3,
    optimiseCoding: true,
    optimiseScans: false,
  };
}
