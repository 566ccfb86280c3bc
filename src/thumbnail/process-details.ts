import { sql } from 'kysely';
import type { ThumbnailConfig } from '../config/thumbnail-config.ts';
import type { Db } from '../db/connect.ts';
import { UsageError } from '../errors.ts';
import { parseSharpen } from '../config/parse-sharpen.ts';
import { sharpenRoad, type SharpenRoad } from './sharpen-road.ts';
import { sharpenKernel, type Kernel } from './sharpen-kernel.ts';

/** How one datasource's images are processed. */
export interface ProcessDetails {
  /** As stored and shown: ImageMagick `RADIUSxSIGMA`. */
  sharpen: string;
  gamma: number;
  quality: number;
}

/** The same, ready for sharp. */
export interface ResolvedDetails extends ProcessDetails {
  /** ImageMagick's sharpen mask for `sharpen`; null: none. */
  sharpenKernel: Kernel | null;
  /** How the mask is applied where sharp's convolve() is not the cheapest road (sharpen-road.ts); null: convolve(). */
  sharpenRoad: SharpenRoad | null;
}

/** What a datasource sets for itself; null: the config's default. */
export type StoredDetails = { [K in keyof ProcessDetails]: ProcessDetails[K] | null };

export const GAMMA_RANGE = { min: 0.1, max: 10 } as const;
export const QUALITY_RANGE = { min: 1, max: 100 } as const;

/**
 * A number within bounds, for decimal flags, written as people write decimals (`0.5`, `.5`, `2.`; not `1e3`, `0x10`,
 * `-1`); the one wording of the error names the flag (cf. parseIntFlag).
 */
export function parseNumberFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value.trim()) || n < min || n > max) {
    throw new UsageError(`${flag} ${JSON.stringify(value)}: expected a number from ${min} to ${max}`);
  }
  return n;
}

/** The one place user-given process details are checked (CLI flags, and the config's defaults at start). */
export function validateDetails(given: { sharpen?: string; gamma?: string; quality?: string }): Partial<ProcessDetails> {
  const out: Partial<ProcessDetails> = {};
  if (given.sharpen !== undefined) {
    parseSharpen(given.sharpen, '--sharpen');
    out.sharpen = given.sharpen.trim().toLowerCase();
  }
  if (given.gamma !== undefined) out.gamma = parseNumberFlag('--gamma', given.gamma, GAMMA_RANGE.min, GAMMA_RANGE.max);
  if (given.quality !== undefined) {
    out.quality = parseNumberFlag('--quality', given.quality, QUALITY_RANGE.min, QUALITY_RANGE.max);
    if (!Number.isInteger(out.quality)) throw new UsageError(`--quality ${JSON.stringify(given.quality)}: expected a whole number from 1 to 100`);
  }
  return out;
}

/**
 * A datasource's own settings over the config's defaults. Pure. Throws UsageError for a value no
 * command would have written (the table's gamma has no CHECK): a gamma of 0 or NaN made black
 * thumbnails, a negative one garbage, and they went live as if nothing were wrong.
 */
export function resolveDetails(stored: StoredDetails, defaults: ThumbnailConfig['defaults']): ResolvedDetails {
  const { sharpen, gamma, quality } = detailsInForce(stored, defaults);
  if (!(gamma >= GAMMA_RANGE.min && gamma <= GAMMA_RANGE.max)) {
    throw new UsageError(`gamma ${gamma}: expected a number from ${GAMMA_RANGE.min} to ${GAMMA_RANGE.max}`);
  }
  const spec = parseSharpen(sharpen, 'sharpen');
  const kernel = sharpenKernel(spec);
  return { sharpen, gamma, quality, sharpenKernel: kernel, sharpenRoad: sharpenRoad(spec, kernel) };
}

/** A datasource's own settings over the config's defaults, as stored, unchecked (resolveDetails checks them). Pure. */
export function detailsInForce(stored: StoredDetails, defaults: ThumbnailConfig['defaults']): ProcessDetails {
  // real (float4) comes back as 1.2000000476837158
  const gamma = stored.gamma === null ? defaults.gamma : Math.round(stored.gamma * 1000) / 1000;
  return { sharpen: stored.sharpen ?? defaults.sharpen, gamma, quality: stored.quality ?? defaults.quality };
}

/** `lis_datasource_process_details(country, datasource_id)`: one row, NULLs where the datasource sets nothing. */
export async function storedDetails(db: Db, country: string, datasourceId: number): Promise<StoredDetails> {
  const { rows } = await sql<StoredDetails>`
    SELECT sharpen, gamma, quality FROM lis_datasource_process_details(${country}, ${datasourceId})`.execute(db);
  return rows[0] ?? { sharpen: null, gamma: null, quality: null };
}

export async function processDetails(db: Db, country: string, datasourceId: number, defaults: ThumbnailConfig['defaults']): Promise<ResolvedDetails> {
  return resolveDetails(await storedDetails(db, country, datasourceId), defaults);
}
