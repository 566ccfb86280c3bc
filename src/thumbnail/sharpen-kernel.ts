import type { SharpenSpec } from '../config/parse-sharpen.ts';

/** A convolution mask as sharp's convolve() takes it: odd width and height, at least 3. */
export interface Kernel {
  width: number;
  height: number;
  kernel: number[];
  scale: number;
}

/**
 * ImageMagick's 16-bit cut-off: a Gaussian is as wide as needed for its edge
 * weight to fall below one level in 65535 (GetOptimalKernelWidth2D).
 */
const IM_QUANTUM_SCALE = 1 / 65535;

/** Outer rings that together weigh less than this cannot move an 8-bit value by half a level. */
const NEGLIGIBLE_RING = 0.5 / 255;

/** ImageMagick's mask width for a radius and sigma: 2*ceil(radius)+1, or from sigma when the radius is 0. */
export function imageMagickWidth(radius: number, sigma: number): number {
  if (radius > 0) return 2 * Math.ceil(radius) + 1;
  const alpha = 1 / (2 * sigma * sigma);
  const beta = 1 / (2 * Math.PI * sigma * sigma);
  for (let width = 5; ; width += 2) {
    const j = (width - 1) / 2;
    let normalize = 0;
    for (let v = -j; v <= j; v++) for (let u = -j; u <= j; u++) normalize += Math.exp(-(u * u + v * v) * alpha) * beta;
    if ((Math.exp(-(j * j) * alpha) * beta) / normalize < IM_QUANTUM_SCALE) return width - 2;
  }
}

/**
 * The mask of ImageMagick's `-sharpen` (SharpenImage): minus a Gaussian, with
 * the centre raised to twice the Gaussian's sum, normalised to sum 1. Applied
 * per channel in sRGB, as ImageMagick applies it, so the old system's settings
 * keep their look. At the default 0x0.5 it costs a fifth of sharp's sharpen(),
 * which converts each thumbnail to Lab and back; at 0x1 about the same. Rings too light to change an 8-bit pixel are cut
 * off (sigma 0.5: ImageMagick's 5x5 becomes 3x3). Null when nothing is left.
 */
export function sharpenKernel(spec: SharpenSpec): Kernel | null {
  if (!spec) return null;
  const { sigma } = spec;
  let width = imageMagickWidth(spec.radius, sigma);
  const gaussian = (u: number, v: number) => Math.exp(-(u * u + v * v) / (2 * sigma * sigma)) / (2 * Math.PI * sigma * sigma);
  const maskOf = (w: number) => {
    const j = (w - 1) / 2;
    const values: number[] = [];
    for (let v = -j; v <= j; v++) for (let u = -j; u <= j; u++) values.push(-gaussian(u, v));
    const centre = (values.length - 1) / 2;
    values[centre] = -2 * values.reduce((s, x) => s + x, 0);
    const sum = values.reduce((s, x) => s + x, 0);
    return values.map((x) => x / sum);
  };
  let mask = maskOf(width);
  while (width > 3 && ringWeight(mask, width) < NEGLIGIBLE_RING) {
    width -= 2;
    mask = maskOf(width);
  }
  const centre = (mask.length - 1) / 2;
  if (mask.every((x, i) => Math.abs(i === centre ? x - 1 : x) < NEGLIGIBLE_RING)) return null;
  return { width, height: width, kernel: mask, scale: 1 };
}

/** Sum of the absolute weights on the outermost ring of a square mask. */
function ringWeight(mask: number[], width: number): number {
  let sum = 0;
  for (let y = 0; y < width; y++) {
    for (let x = 0; x < width; x++) {
      if (x === 0 || y === 0 || x === width - 1 || y === width - 1) sum += Math.abs(mask[y * width + x]);
    }
  }
  return sum;
}
