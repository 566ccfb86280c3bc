import type { SharpenSpec } from '../config/parse-sharpen.ts';
import { ensureMemory, lazyWasm } from '../util/wasm-module.ts';
import type { Kernel } from './sharpen-kernel.ts';
import type { Size } from './preset-geometry.ts';
import { WASM_BASE64 } from './sharpen-separable.wasm.ts';

/**
 * ImageMagick's sharpen mask (sharpen-kernel.ts) is a Gaussian G over a square, negated, with its centre
 * raised: M = ((2S + 1) δ - G) / (S + 1), where G's centre is 1 and S is its sum. A square Gaussian is
 * separable, G = g gᵀ with g(u) = exp(-u² / 2σ²), so S = (Σg)² and
 *
 *     x ⊛ M = centre · x - blur · (x ⊛ G / S),   centre = (2S + 1) / (S + 1),  blur = S / (S + 1).
 *
 * x ⊛ G / S is a row pass and a column pass of the normalised g: 2w taps a sample for a mask of width w, where
 * sharp's convolve() (libvips' float convolution, generic and not vectorised) takes w². sharpen-separable.wat
 * makes both passes and the combination with SIMD, in f64 over integer sums of symmetric neighbours (the row
 * pass's results kept as f32, as libvips keeps its own), the edges copied outwards as libvips does, and ends
 * as libvips' cast to 8 bits does: truncated and clamped. The two agree but for float rounding: one level, on
 * a few samples in a million (test/thumbnail-images.test.ts). One at a time, 1024x683 RGB: sigma 1 (7x7)
 * 62 ms of CPU in convolve(), 10.6 here; 11x11 17 ms; 21x21 46.
 */
export interface SeparableSharpen {
  /** Taps out from the centre: g[0..reach], normalised so that g[0] + 2 Σ g[1..] = 1. */
  taps: number[];
  centre: number;
  blur: number;
}

/**
 * Masks narrower than this (3x3) take the 3x3 road (sharpen-road.ts). Measured one at a time on photos, the
 * JPEG included: 5x5 (sigma 0.7) 30.4 against 39.7 ms at 640x427 with convolve(), 9.8 against 12.5 at 320x240,
 * 2.4 against 2.7 at 120x90; wider masks gain more.
 */
export const SEPARABLE_MIN_WIDTH = 5;

/**
 * What float rounding may take off a sample that is exactly a level: a flat area's blur comes back a few units in
 * the last place of a float above or below the level, and truncation would then darken it by one (a third of the
 * 256 flat levels at sigma 1). convolve() keeps every flat level; so do the roads that replace it, at every
 * sigma from 1 to 10 (test/thumbnail-images.test.ts). It moves a sample only when it lies that close below a level.
 */
export const FLOAT_SLACK = 2e-5;

/** The separable form of `kernel` (sharpenKernel(spec)), or null for a mask narrower than SEPARABLE_MIN_WIDTH. Pure. */
export function separableSharpen(spec: SharpenSpec, kernel: Kernel | null): SeparableSharpen | null {
  if (!spec || !kernel || kernel.width < SEPARABLE_MIN_WIDTH || kernel.width !== kernel.height) return null;
  const reach = (kernel.width - 1) / 2;
  const g = Array.from({ length: reach + 1 }, (_, u) => Math.exp(-(u * u) / (2 * spec.sigma * spec.sigma)));
  const line = g[0] + 2 * g.slice(1).reduce((a, b) => a + b, 0);
  const sum = line * line;
  return { taps: g.map((tap) => tap / line), centre: (2 * sum + 1) / (sum + 1), blur: sum / (sum + 1) };
}

type SharpenCall = (
  src: number,
  rows: number,
  dst: number,
  width: number,
  height: number,
  channels: number,
  reach: number,
  centre: number,
  blur: number,
  slack: number,
) => void;

const module = lazyWasm<{ sharpen: SharpenCall }>(WASM_BASE64);

/** Where the module reads its taps (f64 from 0) and the picture: room for 128 taps, then 16-byte aligned blocks. */
const PICTURE_AT = 1024;
const align16 = (n: number) => Math.ceil(n / 16) * 16;

/**
 * `pixels` (8-bit, `channels` a pixel, `size`) sharpened by `plan`, as a new buffer. Synchronous, on the calling
 * thread. The module's memory grows to the largest picture seen (6 bytes a sample) and keeps that.
 */
export function sharpenSeparably(pixels: Uint8Array, size: Size, channels: number, plan: SeparableSharpen): Buffer {
  const samples = size.width * size.height * channels;
  if (pixels.length !== samples) throw new Error(`${pixels.length} bytes given for ${size.width}x${size.height}x${channels}`);
  if (plan.taps.length * 8 > PICTURE_AT) throw new Error(`a mask of ${2 * plan.taps.length - 1} taps is wider than the module takes`);
  const { memory, exports } = module();
  const rows = PICTURE_AT + align16(samples);
  const dst = rows + align16(4 * samples);
  ensureMemory(memory, dst + samples);
  new Float64Array(memory.buffer, 0, plan.taps.length).set(plan.taps);
  new Uint8Array(memory.buffer, PICTURE_AT, samples).set(pixels);
  exports.sharpen(PICTURE_AT, rows, dst, size.width, size.height, channels, plan.taps.length - 1, plan.centre, plan.blur, FLOAT_SLACK);
  return Buffer.from(new Uint8Array(memory.buffer, dst, samples));
}
