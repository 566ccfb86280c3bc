import { rgbaToThumbHash } from 'thumbhash';

/** ThumbHash works on at most 100x100 pixels. */
export const THUMBHASH_MAX_SIDE = 100;

/** A ThumbHash (base64, ~25 bytes) of RGBA pixels no larger than 100x100: the blurred stand-in shown while a thumbnail loads. */
export function thumbHashOf(width: number, height: number, rgba: Uint8Array): string {
  return Buffer.from(rgbaToThumbHash(width, height, rgba)).toString('base64');
}

/** `#rrggbb` */
export function hexColour(c: { r: number; g: number; b: number }): string {
  return `#${[c.r, c.g, c.b]
    .map((v) =>
      Math.max(0, Math.min(255, Math.round(v)))
        .toString(16)
        .padStart(2, '0'),
    )
    .join('')}`;
}
