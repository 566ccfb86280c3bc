// Bytes and SSIM of thumbnails, for bench/thumbnail.ts: each image is compared with a lossless,
// unsharpened reference of exactly its own framing, so that no side is judged a pixel off.
import sharp from 'sharp';

/** Mean SSIM of the luma of two images of the same size, over 8x8 windows every 4 px (Wang et al. constants). */
export async function ssim(a: Buffer, b: Buffer): Promise<number> {
  const [ma, mb] = [await sharp(a).metadata(), await sharp(b).metadata()];
  if (ma.width !== mb.width || ma.height !== mb.height) {
    throw new Error(`SSIM of images of different sizes (${ma.width}x${ma.height} against ${mb.width}x${mb.height}): not aligned`);
  }
  const width = ma.width;
  const height = ma.height;
  const luma = (img: Buffer) => sharp(img).greyscale().raw().toBuffer();
  const [x, y] = [await luma(a), await luma(b)];
  const C1 = (0.01 * 255) ** 2;
  const C2 = (0.03 * 255) ** 2;
  let total = 0;
  let windows = 0;
  for (let wy = 0; wy + 8 <= height; wy += 4) {
    for (let wx = 0; wx + 8 <= width; wx += 4) {
      let sx = 0,
        sy = 0,
        sxx = 0,
        syy = 0,
        sxy = 0;
      for (let j = 0; j < 8; j++) {
        for (let i = 0; i < 8; i++) {
          const p = x[(wy + j) * width + wx + i];
          const q = y[(wy + j) * width + wx + i];
          sx += p;
          sy += q;
          sxx += p * p;
          syy += q * q;
          sxy += p * q;
        }
      }
      const mx = sx / 64,
        my = sy / 64;
      const vx = sxx / 64 - mx * mx,
        vy = syy / 64 - my * my,
        cxy = sxy / 64 - mx * my;
      total += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
      windows++;
    }
  }
  return total / windows;
}

/**
 * Bytes a contender would need for `ssimWanted`, from its (SSIM, bytes) points at several qualities:
 * linear between the two points around it (the ends extrapolated). Pure.
 */
export function bytesAtSsim(points: Array<{ ssim: number; bytes: number }>, ssimWanted: number): number {
  const sorted = [...points].sort((a, b) => a.ssim - b.ssim);
  let i = sorted.findIndex((p) => p.ssim >= ssimWanted);
  if (i <= 0) i = i === 0 ? 1 : sorted.length - 1;
  const [lo, hi] = [sorted[i - 1], sorted[i]];
  if (hi.ssim === lo.ssim) return hi.bytes;
  return lo.bytes + ((ssimWanted - lo.ssim) / (hi.ssim - lo.ssim)) * (hi.bytes - lo.bytes);
}
