import { execFile } from 'node:child_process';
import type { LisConfig } from '../config/config-schema.ts';
import { sharedRead } from '../util/shared-read.ts';

/** Bytes used by this host's stores (`du`, bounded in time: a huge store answers null rather than hang a report). */
export async function storeDiskUse(config: LisConfig): Promise<StoreBytes> {
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

type StoreBytes = Record<'originals' | 'thumbnails', number | null>;

const DISK_USE_MAX_AGE_MS = 10 * 60_000;
/** One shared read per pair of store folders (a process may be handed another config, as the tests do). */
const diskUseReads = new Map<string, (fresherThanMs?: number) => Promise<{ value: StoreBytes; at: Date }>>();

/**
 * storeDiskUse, at most once per `maxAgeMs`: the status page refreshes every
 * few seconds, and walking a store of millions of files that often would be
 * the heaviest thing the host does.
 */
export async function cachedStoreDiskUse(config: LisConfig, maxAgeMs = DISK_USE_MAX_AGE_MS): Promise<StoreBytes> {
  const key = `${config.stores.originals}\n${config.stores.thumbnails}`;
  let read = diskUseReads.get(key);
  if (!read) diskUseReads.set(key, (read = sharedRead(() => storeDiskUse(config), DISK_USE_MAX_AGE_MS)));
  return (await read(maxAgeMs)).value;
}
