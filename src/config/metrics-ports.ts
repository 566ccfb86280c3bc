import path from 'node:path';

/**
 * The components that serve /metrics on a port from `metrics.ports` (lis_imaged has its own, `imaged.port`).
 * Only these names are accepted there: a misspelt one would be read by nothing, and its daemon serve no metrics.
 */
export const METRICS_COMPONENTS = ['downloadd', 'thumbnaild', 'pusherd', 'managerd'] as const;
export type MetricsComponent = (typeof METRICS_COMPONENTS)[number];

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

/** Pure: a component's base port in `metrics.ports`; undefined for a component not there (or one that has none, such as a test's). */
export function basePortOf(ports: Partial<Record<MetricsComponent, number | null>>, component: string): number | null | undefined {
  const byName: Partial<Record<string, number | null>> = ports;
  return byName[component];
}

/** The highest port a TCP listener can have. */
export const MAX_PORT = 65535;

/**
 * Pure: the base ports (`metrics.ports`) whose last country's instance would
 * get a port past 65535, with that port. The last place is the highest, so
 * it is the only one to check.
 */
export function metricsPortsPastRange(
  ports: Partial<Record<MetricsComponent, number | null>>,
  countries: string[],
): Array<{ component: string; country: string; port: number }> {
  const last = countries.at(-1);
  if (last === undefined) return [];
  return Object.entries(ports).flatMap(([component, base]) => {
    const port = instanceMetricsPort(base, last, countries);
    return port !== null && port > MAX_PORT ? [{ component, country: last, port }] : [];
  });
}

/** Where a daemon instance writes its metrics URL (so that a port picked at random can be found): `run/imagesys-downloadd.uk.metrics`. */
export function metricsUrlFile(runDir: string, component: string, country: string | undefined): string {
  return path.join(runDir, `imagesys-${component}${country ? `.${country}` : ''}.metrics`);
}
