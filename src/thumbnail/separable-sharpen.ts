import sharp from 'sharp';
import type { SharpenSpec } from '../config/parse-sharpen.ts';
import type { Kernel } from './sharpen-kernel.ts';
import type { Size } from './preset-geometry.ts';

/**
 * ImageMagick's sharpen mask (sharpen-kernel.ts) is a Gaussian G over a square, negated, with its centre
 * raised: M = ((2S + 1) δ - G) / (S + 1), where G's centre is 1 and S is its sum. A square Gaussian is
 * separable, G = g gᵀ with g(u) = exp(-u² / 2σ²), so S = (Σg)² and
 *
 *     x ⊛ M = centre · x - blur · (x ⊛ G / S),   centre = (2S + 1) / (S + 1),  blur = S / (S + 1).
 *
 * x ⊛ G / S is libvips' Gaussian blur in float precision (vips_gaussblur: vips_gaussmat's separable mask,
 * exp(-u² / 2σ²) out to where it falls below min_ampl, scaled by its sum; a row pass, then a column pass),
 * so a mask of width w costs 2w taps a sample instead of w². sharp's convolve() has only the w² road (libvips'
 * float convolution, which sharp does not let us ask for in integer precision). Both end as libvips' cast to
 * 8 bits does: truncated and clamped. The results agree but for float rounding: one level, on a few samples in
 * a million (test/thumbnail-images.test.ts). Measured one at a time, 1024x683 photos (docs/benchmarks.md): sigma
 * 1 (7x7) 72 ms of CPU with convolve(), 30 with this road; 3x3 (the default 0x0.5) costs more this way, so
 * SEPARABLE_MIN_WIDTH keeps it on convolve().
 */
export interface SeparableSharpen {
  sigma: number;
  /** vips_gaussblur's min_ampl that gives the mask's own width. */
  minAmplitude: number;
  centre: number;
  blur: number;
}

/**
 * Masks narrower than this stay one convolve(). Measured one at a time on photos (JPEG included): a 3x3 mask costs
 * more as a blur and a combination; a 5x5 about the same (120x90 to 1024x683: -0.7 to +10 ms); 7x7 and wider pay
 * above 120x90 (7x7: 3.7 ms saved at 320x213, 16 at 640x427, 43 at 1024x683; 11x11: 1.6, 14, 60, 152 ms).
 */
export const SEPARABLE_MIN_WIDTH = 7;

/** sharp's blur() accepts min_ampl in [0.001, 1] and sigma from 0.3. */
const MIN_AMPLITUDE_RANGE = { min: 0.001, max: 1 } as const;
const SHARP_MIN_BLUR_SIGMA = 0.3;

/**
 * The separable form of `kernel` (sharpenKernel(spec)), or null when convolve() is cheaper (a narrow mask) or
 * libvips' Gaussian cannot have the mask's width (min_ampl is bounded; vips_gaussmat stops at 8 sigma). Pure.
 */
export function separableSharpen(spec: SharpenSpec, kernel: Kernel | null): SeparableSharpen | null {
  if (!spec || !kernel || kernel.width < SEPARABLE_MIN_WIDTH || kernel.width !== kernel.height) return null;
  const { sigma } = spec;
  if (sigma < SHARP_MIN_BLUR_SIGMA) return null;
  const reach = (kernel.width - 1) / 2;
  const tap = (u: number) => Math.exp(-(u * u) / (2 * sigma * sigma));
  // vips_gaussmat widens while exp(-x²/2σ²) >= min_ampl, for x below floor(8σ): the first x under min_ampl must
  // be reach + 1. The geometric mean of the two taps sits between them with the most room either side; sharp
  // bounds min_ampl, so it is moved into sharp's range when it can still fall between them.
  if (reach + 1 >= Math.floor(8 * sigma)) return null;
  const between = Math.sqrt(tap(reach) * tap(reach + 1));
  const minAmplitude = Math.min(MIN_AMPLITUDE_RANGE.max, Math.max(MIN_AMPLITUDE_RANGE.min, between));
  if (!(tap(reach) >= minAmplitude && tap(reach + 1) < minAmplitude)) return null;
  let line = 0;
  for (let u = -reach; u <= reach; u++) line += tap(u);
  const sum = line * line;
  return { sigma, minAmplitude, centre: (2 * sum + 1) / (sum + 1), blur: sum / (sum + 1) };
}

/**
 * `pixels` (8-bit, `channels` a pixel, `size`) sharpened by `plan`: libvips blurs in float, and each sample
 * becomes centre·x - blur·blurred, truncated and clamped to 8 bits as libvips' cast would.
 */
export async function sharpenSeparably(pixels: Buffer, size: Size, channels: number, plan: SeparableSharpen): Promise<Buffer> {
  const raw = { raw: { width: size.width, height: size.height, channels: channels as 1 | 2 | 3 | 4 } };
  const blurred = await sharp(pixels, raw).blur({ sigma: plan.sigma, precision: 'float', minAmplitude: plan.minAmplitude }).raw({ depth: 'float' }).toBuffer();
  return combineSharpened(pixels, asFloats(blurred), plan.centre, plan.blur);
}

/**
 * What float rounding may take off a sample that is exactly a level: a flat area's blur comes back a few units in
 * the last place of a float above or below the level, and truncation would then darken it by one (a third of the
 * 256 flat levels at sigma 1). convolve() keeps every flat level; so does this, at every sigma from 1 to 10
 * (test/thumbnail-images.test.ts). It moves a sample only when it lies that close below a level.
 */
const FLOAT_SLACK = 2e-5;

/** centre·x - blur·b per sample, truncated toward zero and clamped to 0..255 (libvips' float-to-uchar cast). Pure. */
export function combineSharpened(pixels: Uint8Array, blurred: Float32Array, centre: number, blur: number): Buffer {
  const n = pixels.length;
  if (blurred.length !== n) throw new Error(`blurred picture has ${blurred.length} samples, expected ${n}`);
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    const v = centre * pixels[i] - blur * blurred[i] + FLOAT_SLACK;
    out[i] = v <= 0 ? 0 : v >= 255 ? 255 : v | 0;
  }
  return out;
}

/** A float raw buffer as Float32Array, copied only when it does not start on a 4-byte boundary. */
function asFloats(data: Buffer): Float32Array {
  if (data.byteOffset % Float32Array.BYTES_PER_ELEMENT === 0)
    return new Float32Array(data.buffer, data.byteOffset, data.length / Float32Array.BYTES_PER_ELEMENT);
  return new Float32Array(Uint8Array.from(data).buffer);
}
