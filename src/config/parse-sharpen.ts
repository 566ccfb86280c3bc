import { UsageError } from '../errors.ts';

/** ImageMagick's `-sharpen RADIUSxSIGMA`; null: no sharpening. */
export type SharpenSpec = { radius: number; sigma: number } | null;

/** Below sigma 0.01 nothing visible happens; above 10 (or radius 10) the mask outgrows any thumbnail. */
const MIN_SIGMA = 0.01;
const MAX_SIGMA = 10;
const MAX_RADIUS = 10;

const NOTATION = /^(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)$/;

/**
 * ImageMagick's `-sharpen RADIUSxSIGMA` notation: `0x1` is sigma 1 with the
 * radius chosen from sigma, as ImageMagick chooses it (see sharpen-kernel.ts).
 * `0x0` and `none` mean no sharpening. Throws one wording of error (a
 * UsageError naming what was given).
 */
export function parseSharpen(value: string, what = '--sharpen'): SharpenSpec {
  const text = value.trim().toLowerCase();
  if (text === 'none') return null;
  const match = NOTATION.exec(text);
  const radius = match ? Number(match[1]) : NaN;
  const sigma = match ? Number(match[2]) : NaN;
  if (!match || radius > MAX_RADIUS || !(sigma === 0 || (sigma >= MIN_SIGMA && sigma <= MAX_SIGMA))) {
    throw new UsageError(
      `${what} ${JSON.stringify(value)}: expected RADIUSxSIGMA such as 0x1 (radius 0-${MAX_RADIUS}, sigma ${MIN_SIGMA}-${MAX_SIGMA}), or 0x0 or none for no sharpening`,
    );
  }
  return sigma === 0 ? null : { radius, sigma };
}
