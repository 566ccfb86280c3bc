import { execFile } from 'node:child_process';
import type { LisConfig } from '../config/config-schema.ts';

/** Bytes used by this host's stores (`du`, bounded in time: a huge store answers null rather than hang a report). */
export async function storeDiskUse(config: LisConfig): Promise<Record<'originals' | 'thumbnails', number | null>> {
  const du = (dir: string) =>
    new Promise<number | null>((resolve) => {
      execFile('du', ['-sk', dir], { timeout: 60_000 }, (error, stdout) => {
        const kb = Number(stdout.split(/\s/)[0]);
        resolve(error || !Number.isFinite(kb) ? null : kb * 1024);
      });
    });
  const [originals, thumbnails] = await Promise.all([du(config.stores.originals), du(config.stores.thumbnails)]);
  return { originals, thumbnails };
}

let diskCache: { at: number; key: string; value: Promise<Record<'originals' | 'thumbnails', number | null>> } | null = null;

/**
 * storeDiskUse, at most once per `maxAgeMs`: the status page refreshes every
 * few seconds, and walking a store of millions of files that often would be
 * the heaviest thing the host does.
 */
export function cachedStoreDiskUse(config: LisConfig, maxAgeMs = 10 * 60_000): Promise<Record<'originals' | 'thumbnails', number | null>> {
  const key = `${config.stores.originals}\n${config.stores.thumbnails}`;
  if (!diskCache || diskCache.key !== key || Date.now() - diskCache.at > maxAgeMs) diskCache = { at: Date.now(), key, value: storeDiskUse(config) };
  return diskCache.value;
}
