import { UsageError } from '../errors.ts';

/** What sharp's sharpen() takes; null: no sharpening. */
export type SharpenOptions = { sigma: number } | null;

/** sharp accepts sigma from 0.000001 to 10; below 0.01 nothing visible happens. */
const MIN_SIGMA = 0.01;
const MAX_SIGMA = 10;

const NOTATION = /^(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)$/;

/**
 * ImageMagick's `-sharpen RADIUSxSIGMA` as sharp options: `0x1` is sigma 1 with
 * the radius chosen from sigma, which is what sharp always does (its mask size
 * follows sigma), so a radius is accepted for compatibility with the old
 * settings and otherwise ignored. `0x0` and `none` mean no sharpening.
 * Throws one wording of error (a UsageError naming what was given).
 */
export function parseSharpen(value: string, what = '--sharpen'): SharpenOptions {
  const text = value.trim().toLowerCase();
  if (text === 'none') return null;
  const match = NOTATION.exec(text);
  const sigma = match ? Number(match[2]) : NaN;
  if (!match || !(sigma === 0 || (sigma >= MIN_SIGMA && sigma <= MAX_SIGMA))) {
    throw new UsageError(`${what} ${JSON.stringify(value)}: expected RADIUSxSIGMA such as 0x1 (sigma ${MIN_SIGMA}-${MAX_SIGMA}), or 0x0 or none for no sharpening`);
  }
  return sigma === 0 ? null : { sigma };
}
