/**
 * A string's length in characters as a person counts them: Unicode code
 * points, not UTF-16 code units (`text.length`), which count an emoji or any
 * other astral character twice. `enqueue.maxUrlLength` is in these. A lone
 * surrogate counts as one.
 */
export function codePointLength(text: string): number {
  let count = 0;
  // for...of walks code points (a surrogate pair is one step).
  for (const _ of text) count++;
  return count;
}
