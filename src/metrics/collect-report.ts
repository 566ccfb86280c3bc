import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { frontendLag } from '../push/frontend-lag.ts';
import { datasourceFailures, queueDepth, rowCounts, throughput } from '../queue/queue-figures.ts';
import { cachedStoreDiskUse, storeDiskUse } from '../store/store-disk-use.ts';

export type MetricsReport = Awaited<ReturnType<typeof collectReport>>;

/**
 * Everything `lis_metrics` and the status page show, in one object. The page
 * asks often, so it takes the store disk use from a cache (`cachedDisk`).
 */
export async function collectReport(db: Db, config: LisConfig, country?: string, options: { cachedDisk?: boolean } = {}) {
  const [rows, queue, lastHour, lastDay, datasources, frontends, disk] = await Promise.all([
    rowCounts(db, country),
    queueDepth(db, country),
    throughput(db, 60, country),
    throughput(db, 24 * 60, country),
    datasourceFailures(db, 24, country),
    frontendLag(db, { country }),
    options.cachedDisk ? cachedStoreDiskUse(config) : storeDiskUse(config),
  ]);
  return { at: new Date().toISOString(), country: country ?? null, rows, queue, throughput: { lastHour, lastDay }, datasources, frontends, disk };
}
