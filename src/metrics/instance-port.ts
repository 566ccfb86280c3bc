import path from 'node:path';

/**
 * Pure: the metrics port of one daemon instance. Every instance on a host
 * needs its own, so a per-country daemon takes the component's base port plus
 * its country's place in `countries` (uk 9401, de 9402 ... for a base of 9401).
 * 0 picks a free port; null/undefined: no exposition.
 */
export function instanceMetricsPort(base: number | null | undefined, country: string | undefined, countries: string[]): number | null {
  if (base === null || base === undefined) return null;
  if (base === 0 || country === undefined) return base;
  return base + Math.max(0, countries.indexOf(country));
}

/** Where a daemon instance writes its metrics URL (so that a port picked at random can be found): `run/imagesys-downloadd.uk.metrics`. */
export function metricsUrlFile(runDir: string, component: string, country: string | undefined): string {
  return path.join(runDir, `imagesys-${component}${country ? `.${country}` : ''}.metrics`);
}
