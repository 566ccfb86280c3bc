/**
 * ImageMagick's `-gamma G` as a lookup table over 8-bit levels:
 * out = 255 * (in / 255) ^ (1 / G). G above 1 brightens the mid-tones, below
 * darkens; black and white stay. (sharp's own gamma() is something else: it
 * resizes in linear light and gives the encoding back, leaving tones as they were.)
 */
export function gammaTable(gamma: number): Uint8Array {
  const table = new Uint8Array(256);
  for (let level = 0; level < 256; level++) table[level] = Math.round(255 * (level / 255) ** (1 / gamma));
  return table;
}

/** Applies a gamma in place to 8-bit samples; 1.0 leaves them alone. */
export function applyGamma(samples: Uint8Array, gamma: number): void {
  if (gamma === 1) return;
  const table = gammaTable(gamma);
  for (let i = 0; i < samples.length; i++) samples[i] = table[samples[i]];
}
