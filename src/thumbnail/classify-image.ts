import type { ThumbnailConfig } from '../config/thumbnail-config.ts';
import type { Size } from './preset-geometry.ts';

export const IMAGE_CLASSES = ['photo', 'placeholder', 'tiny', 'duplicate'] as const;
export type ImageClass = (typeof IMAGE_CLASSES)[number];

/** What the rules look at, all measured by the thumbnailer. */
export interface ClassFacts {
  /** Upright size of the original. */
  original: Size;
  /** Largest standard deviation of the R, G and B channels (0-255). */
  maxStdev: number;
  /** Entropy of the grey levels, in bits (0-8). */
  entropy: number;
  /** Rows of the same datasource with the same perceptual hash, this one included. */
  sameHashListings: number;
}

/**
 * The rules, first match wins:
 * 1. `tiny`: the original is narrower than `tinyWidth` or lower than `tinyHeight`;
 * 2. `placeholder`: near-uniform (every channel's stdev < `uniformMaxStdev`) or
 *    near-blank (grey entropy < `blankMaxEntropy`: a flat page with a little text);
 * 3. `duplicate`: the picture (perceptual hash) is on `duplicateMinListings` or
 *    more rows of the datasource: agency logos, "no photo" images;
 * 4. `photo`.
 * Rows with `human_classified` are never given a class (the caller skips them).
 */
export function classifyImage(facts: ClassFacts, rules: ThumbnailConfig['classes']): ImageClass {
  if (facts.original.width < rules.tinyWidth || facts.original.height < rules.tinyHeight) return 'tiny';
  if (facts.maxStdev < rules.uniformMaxStdev || facts.entropy < rules.blankMaxEntropy) return 'placeholder';
  if (facts.sameHashListings >= rules.duplicateMinListings) return 'duplicate';
  return 'photo';
}

/**
 * Whether the count of rows with the same picture can change the class: not when an earlier rule
 * (`tiny`, `placeholder`) settles it whatever the count, nor when the rows already counted reach the
 * threshold. The thumbnailer asks the database for the count only when it matters (three rows in four
 * of a set of small PNGs are `tiny`: a query each, for nothing). Pure.
 */
export function sameHashCountMatters(facts: Omit<ClassFacts, 'sameHashListings'>, known: number, rules: ThumbnailConfig['classes']): boolean {
  if (known >= rules.duplicateMinListings) return false;
  return classifyImage({ ...facts, sameHashListings: rules.duplicateMinListings }, rules) === 'duplicate';
}
