import sharp from 'sharp';
import type { Region, Size } from './preset-geometry.ts';

/**
 * sharp's `position: 'attention'` crop, found without libvips' ~25 small operations (about 5 ms of
 * CPU per crop, whatever the picture's size). libvips 8.18's vips_smartcrop_attention scores a 32x32
 * copy of the picture it is to crop (the picture already scaled to cover the box): edges (Laplacian
 * of Y in XYZ, times 5), skin (closeness of the XYZ direction to a skin colour) and redness (Lab a*),
 * the last two only where Y > 5; sums them, blurs the sum and centres the box on the maximum.
 * Here only the 32x32 copy and its XYZ come from libvips (one small pipeline: the same vips_resize
 * call with the same scales, and the same colour code); the scores, blur and maximum are computed
 * below in double precision. libvips works in float, so a maximum that another offset comes within
 * attentionMargin of could be libvips' other choice: then libvips is asked (attentionOffset).
 * test/attention-crop.test.ts holds it equal to sharp over the test corpus.
 */

/** The side of the score map (vips_smartcrop_attention's 32). */
export const MAP_SIDE = 32;

/** From smartcrop.js, by way of libvips: a skin colour's XYZ direction, negated. */
export const SKIN_VECTOR = [-0.78, -0.57, -0.44] as const;

/** vips_gaussblur's default min_ampl: the mask stops where the Gaussian falls below it. */
const GAUSS_MIN_AMPL = 0.2;

/**
 * How far ahead of every score that would give another offset the best must be for ours to stand.
 * libvips keeps its images in float: the XYZ is libvips' own, but the edge, skin, a* and blur
 * steps each round to float (a few 1e-4 at scores of ~2000) and its a* comes from a cube-root table
 * (1.1e-4 from the exact value, measured over every 8-bit colour). 0.01 + 1e-5 of the score is more
 * than ten times that.
 */
export function attentionMargin(best: number): number {
  return 0.01 + 1e-5 * Math.abs(best);
}

/** D65 white, as vips_XYZ2Lab uses it by default. */
const WHITE_X = 95.047;
const WHITE_Y = 100;

/** CIE Lab's f(t), as vips_col_XYZ2Lab tabulates it. */
function labF(t: number): number {
  return t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116;
}

/**
 * vips_gaussmat's mask for vips_gaussblur on the score map: integer precision (vips_gaussblur's
 * default), so each tap is rint(20 * exp(-x^2 / 2 sigma^2)), out to where the Gaussian falls below
 * min_ampl. Returns the taps (centre in the middle) and their sum, libvips' scale.
 */
export function gaussTaps(sigma: number): { taps: number[]; scale: number } {
  const sig2 = 2 * sigma * sigma;
  let reach = 0;
  while (Math.exp(-(reach * reach) / sig2) >= GAUSS_MIN_AMPL) reach++;
  const width = 2 * Math.max(reach - 1, 0) + 1;
  const taps = Array.from({ length: width }, (_, i) => {
    const offset = i - Math.floor(width / 2);
    return Math.round(20 * Math.exp(-(offset * offset) / sig2));
  });
  return { taps, scale: taps.reduce((sum, tap) => sum + tap, 0) || 1 };
}

/** The blur's sigma: the box's size on the 32x32 map, over 10. */
export function attentionSigma(cover: Size, box: Size): number {
  return Math.hypot((box.width * MAP_SIDE) / cover.width, (box.height * MAP_SIDE) / cover.height) / 10;
}

/** Clamps an index into 0..n-1: libvips' convolutions extend their input by copying the edge. */
const edge = (i: number, n: number) => (i < 0 ? 0 : i >= n ? n - 1 : i);

/**
 * The unblurred score of each pixel of a side x side XYZ map (3 floats a pixel, as libvips gives it):
 * |5 x Laplacian of Y| plus, where Y > 5, the skin score (100 - 100 x the distance between the
 * normalised XYZ and the skin direction) and Lab a*.
 */
export function attentionScores(xyz: Float32Array, side: number, skin: readonly number[] = SKIN_VECTOR): Float64Array {
  const y = (col: number, row: number) => xyz[(edge(row, side) * side + edge(col, side)) * 3 + 1];
  const scores = new Float64Array(side * side);
  for (let row = 0; row < side; row++) {
    for (let col = 0; col < side; col++) {
      const i = (row * side + col) * 3;
      const X = xyz[i];
      const Y = xyz[i + 1];
      const Z = xyz[i + 2];
      const laplacian = 4 * Y - y(col, row - 1) - y(col - 1, row) - y(col + 1, row) - y(col, row + 1);
      let score = Math.abs(5 * laplacian);
      if (Y > 5) {
        // As libvips: sqrt of the sum of squares (Math.hypot is slower, and rounds differently anyway).
        const norm = Math.sqrt(X * X + Y * Y + Z * Z);
        const dx = X / norm + skin[0];
        const dy = Y / norm + skin[1];
        const dz = Z / norm + skin[2];
        score += 100 - 100 * Math.sqrt(dx * dx + dy * dy + dz * dz);
        score += 500 * (labF(X / WHITE_X) - labF(Y / WHITE_Y));
      }
      scores[row * side + col] = score;
    }
  }
  return scores;
}

/** vips_gaussblur of a side x side map: the taps across, then down, each pass divided by their sum. */
export function gaussBlur(map: Float64Array, side: number, sigma: number): Float64Array {
  const { taps, scale } = gaussTaps(sigma);
  const reach = (taps.length - 1) / 2;
  const across = new Float64Array(side * side);
  const down = new Float64Array(side * side);
  for (let row = 0; row < side; row++) {
    for (let col = 0; col < side; col++) {
      let sum = 0;
      for (let k = 0; k < taps.length; k++) sum += taps[k] * map[row * side + edge(col + k - reach, side)];
      across[row * side + col] = sum / scale;
    }
  }
  for (let row = 0; row < side; row++) {
    for (let col = 0; col < side; col++) {
      let sum = 0;
      for (let k = 0; k < taps.length; k++) sum += taps[k] * across[edge(row + k - reach, side) * side + col];
      down[row * side + col] = sum / scale;
    }
  }
  return down;
}

/** Where libvips puts the box for a maximum at map pixel (col, row): centred on it, kept inside the picture. */
export function offsetFor(col: number, row: number, cover: Size, box: Size): Omit<Region, keyof Size> {
  // As vips_smartcrop_attention: x / hscale - width / 2 (integer halves), clipped, then truncated to int.
  const place = (at: number, scale: number, boxSide: number, coverSide: number) =>
    Math.trunc(Math.max(0, Math.min(coverSide - boxSide, at / scale - Math.floor(boxSide / 2))));
  return {
    left: place(col, MAP_SIDE / cover.width, box.width, cover.width),
    top: place(row, MAP_SIDE / cover.height, box.height, cover.height),
  };
}

/**
 * The attention crop's offset from the cover picture's 32x32 XYZ map, or null when it is too close to
 * call: another offset's best score comes within attentionMargin of the maximum (flat or symmetric
 * pictures, where libvips' float rounding and scan order decide).
 */
export function attentionFromMap(xyz: Float32Array, cover: Size, box: Size, skin: readonly number[] = SKIN_VECTOR): Omit<Region, keyof Size> | null {
  const blurred = gaussBlur(attentionScores(xyz, MAP_SIDE, skin), MAP_SIDE, attentionSigma(cover, box));
  let best = 0;
  for (let i = 1; i < blurred.length; i++) if (blurred[i] > blurred[best]) best = i;
  const at = (i: number) => offsetFor(i % MAP_SIDE, Math.floor(i / MAP_SIDE), cover, box);
  const chosen = at(best);
  const floor = blurred[best] - attentionMargin(blurred[best]);
  for (let i = 0; i < blurred.length; i++) {
    if (blurred[i] < floor) continue;
    const other = at(i);
    if (other.left !== chosen.left || other.top !== chosen.top) return null;
  }
  return chosen;
}

/** An attention offset, and whose it is: ours, or libvips' when ours was too close to call. */
export interface AttentionOffset {
  left: number;
  top: number;
  by: 'ours' | 'libvips';
}

/** Raw 8-bit sRGB pixels, 3 channels. */
export type RawPicture = { data: Buffer; size: Size };

export const rawInput = (picture: RawPicture) => ({ raw: { width: picture.size.width, height: picture.size.height, channels: 3 as const } });

/**
 * Where sharp's attention strategy cuts `box` out of `cover` (8-bit sRGB, 3 channels, already scaled to
 * cover the box as sharp's resize does: fit 'outside'). sharp's own offset (test/attention-crop.test.ts): when ours is
 * too close to call, libvips' smartcrop runs on the cover picture itself (resize to the box is then a no-op).
 */
export async function attentionOffset(cover: RawPicture, box: Size): Promise<AttentionOffset> {
  if (cover.size.width === box.width && cover.size.height === box.height) return { left: 0, top: 0, by: 'ours' };
  const ours = attentionFromMap(await attentionMap(cover), cover.size, box);
  if (ours) return { ...ours, by: 'ours' };
  const { info } = await sharp(cover.data, rawInput(cover))
    .resize(box.width, box.height, { fit: 'cover', position: 'attention' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  // sharp reports the crop as the output's origin within its input: minus the offset.
  return { left: 0 - (info.cropOffsetLeft ?? 0), top: 0 - (info.cropOffsetTop ?? 0), by: 'libvips' };
}

/** The 32x32 XYZ map vips_smartcrop_attention scores: its vips_resize (lanczos3, 32/width by 32/height), then libvips' sRGB to XYZ. */
export async function attentionMap(cover: RawPicture): Promise<Float32Array> {
  const map = await sharp(cover.data, rawInput(cover)).resize(MAP_SIDE, MAP_SIDE, { fit: 'fill' }).toColourspace('xyz').raw({ depth: 'float' }).toBuffer();
  // A Float32Array needs 4-byte alignment; sharp's buffers have it, a copy is the fallback.
  return map.byteOffset % 4 === 0 ? new Float32Array(map.buffer, map.byteOffset, map.length / 4) : new Float32Array(Uint8Array.from(map).buffer);
}
