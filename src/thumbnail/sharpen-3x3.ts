import type { Kernel } from './sharpen-kernel.ts';
import type { Size } from './preset-geometry.ts';
import { ensureMemory, lazyWasm } from '../util/wasm-module.ts';
import { FLOAT_SLACK } from './separable-sharpen.ts';
import { WASM_BASE64 } from './sharpen-3x3.wasm.ts';

/**
 * A 3x3 sharpen mask (the default `0x0.5`'s) applied by a small WebAssembly loop (sharpen-3x3.wat, SIMD, eight
 * samples at a time) instead of sharp's convolve(), which runs libvips' float convolution: generic over the
 * mask's size and not vectorised, 8.5 ms of CPU at 640x427 inside the JPEG's pipeline. The same arithmetic:
 * the mask's weights in double precision over the integer sums of each sample's symmetric neighbours, the edges
 * copied outwards, truncated and clamped as libvips' cast is, so the two agree but for float rounding (one
 * level, on a few samples in a million: test/thumbnail-images.test.ts).
 */
export interface ThreeByThree {
  centre: number;
  edge: number;
  corner: number;
}

/** The weights of a 3x3 mask with ImageMagick's symmetry (sharpenKernel's), else null. Pure. */
export function threeByThree(kernel: Kernel | null): ThreeByThree | null {
  if (!kernel || kernel.width !== 3 || kernel.height !== 3 || kernel.scale !== 1) return null;
  const [k0, k1, k2, k3, k4, k5, k6, k7, k8] = kernel.kernel;
  if (!(k0 === k2 && k0 === k6 && k0 === k8 && k1 === k3 && k1 === k5 && k1 === k7)) return null;
  return { centre: k4, edge: k1, corner: k0 };
}

type SharpenCall = (width: number, height: number, channels: number, centre: number, edge: number, corner: number, slack: number) => void;

const module = lazyWasm<{ sharpen: SharpenCall }>(WASM_BASE64);

/**
 * `pixels` (8-bit, `channels` a pixel, `size`) sharpened by `mask`, as a new buffer. Synchronous, on the
 * calling thread: about 1 ms at 640x427x3. The module's memory grows to the largest picture seen (twice its
 * bytes) and keeps that.
 */
export function sharpen3x3(pixels: Uint8Array, size: Size, channels: number, mask: ThreeByThree): Buffer {
  const bytes = size.width * size.height * channels;
  if (pixels.length !== bytes) throw new Error(`${pixels.length} bytes given for ${size.width}x${size.height}x${channels}`);
  const { memory, exports } = module();
  ensureMemory(memory, 2 * bytes);
  new Uint8Array(memory.buffer, 0, bytes).set(pixels);
  exports.sharpen(size.width, size.height, channels, mask.centre, mask.edge, mask.corner, FLOAT_SLACK);
  return Buffer.from(new Uint8Array(memory.buffer, bytes, bytes));
}
