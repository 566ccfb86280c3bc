import type { SharpenSpec } from '../config/parse-sharpen.ts';
import type { Size } from './preset-geometry.ts';
import { separableSharpen, sharpenSeparably, type SeparableSharpen } from './separable-sharpen.ts';
import { sharpen3x3, threeByThree, type ThreeByThree } from './sharpen-3x3.ts';
import type { Kernel } from './sharpen-kernel.ts';

/**
 * How a datasource's sharpen mask is applied to a preset's pixels: not by sharp's convolve() (libvips' float
 * convolution, generic and not vectorised) but on a cheaper road with the same arithmetic:
 * - `3x3` (the default `0x0.5`): a WebAssembly SIMD loop (sharpen-3x3.ts);
 * - `separable` (5x5 and wider): a Gaussian blur's two passes and one combination, in WebAssembly SIMD as well
 *   (separable-sharpen.ts).
 * Every mask sharpenKernel makes has one; convolve() stays for one that had not (null here).
 */
export type SharpenRoad = { kind: '3x3'; mask: ThreeByThree } | { kind: 'separable'; plan: SeparableSharpen };

/** The road for `kernel` (sharpenKernel(spec)), or null: no sharpening (or a mask neither road takes: convolve()). Pure. */
export function sharpenRoad(spec: SharpenSpec, kernel: Kernel | null): SharpenRoad | null {
  const mask = threeByThree(kernel);
  if (mask) return { kind: '3x3', mask };
  const plan = separableSharpen(spec, kernel);
  return plan ? { kind: 'separable', plan } : null;
}

/** `pixels` (8-bit, `channels` a pixel, `size`) sharpened on `road`: a new buffer. */
export function sharpenOnRoad(road: SharpenRoad, pixels: Buffer, size: Size, channels: number): Buffer {
  return road.kind === '3x3' ? sharpen3x3(pixels, size, channels, road.mask) : sharpenSeparably(pixels, size, channels, road.plan);
}
