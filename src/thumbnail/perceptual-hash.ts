/**
 * A 64-bit difference hash (dHash) from a 9x8 grey thumbnail: bit i says
 * whether a pixel is brighter than its right-hand neighbour. Re-encoding,
 * rescaling and mild recompression leave it unchanged or nearly so, which is
 * what finds one agency logo across thousands of listings.
 * Returned as a signed 64-bit decimal string (PostgreSQL bigint).
 */
export const DHASH_WIDTH = 9;
export const DHASH_HEIGHT = 8;
/**
 * A pixel counts as brighter only by more than this many levels: in the flat
 * areas of logos and "no photo" images neighbours are equal, and without a
 * margin the noise of re-encoding decides those bits.
 */
export const DHASH_MARGIN = 3;

export function differenceHash(grey9x8: Uint8Array): string {
  if (grey9x8.length !== DHASH_WIDTH * DHASH_HEIGHT)
    throw new RangeError(`differenceHash: expected ${DHASH_WIDTH * DHASH_HEIGHT} grey samples, got ${grey9x8.length}`);
  let bits = 0n;
  for (let y = 0; y < DHASH_HEIGHT; y++) {
    for (let x = 0; x < DHASH_WIDTH - 1; x++) {
      const left = grey9x8[y * DHASH_WIDTH + x];
      const right = grey9x8[y * DHASH_WIDTH + x + 1];
      bits = (bits << 1n) | (left > right + DHASH_MARGIN ? 1n : 0n);
    }
  }
  return BigInt.asIntN(64, bits).toString();
}

/** Bits that differ between two hashes (0: the same picture as far as dHash can tell). */
export function hammingDistance(a: string, b: string): number {
  let x = BigInt.asUintN(64, BigInt(a) ^ BigInt(b));
  let n = 0;
  while (x) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}
