import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { frontendLag } from '../push/frontend-lag.ts';
import { datasourceFailures, queueDepth, rowCounts, throughput } from '../queue/queue-figures.ts';
import { cachedStoreDiskUse, storeDiskUse } from '../store/store-disk-use.ts';

export type MetricsReport = Awaited<ReturnType<typeof collectReport>>;

/** The figures that scan live_images whole (rows by state; the rows live or in push each frontend lacks). */
export async function wholeTableFigures(db: Db, country?: string) {
  const [rows, frontends] = await Promise.all([rowCounts(db, country), frontendLag(db, { country })]);
  return { rows, frontends };
}

export type WholeTableFigures = Awaited<ReturnType<typeof wholeTableFigures>>;

/**
 * Everything `lis_metrics` and the status page show, in one object. The page
 * asks often, so it takes the store disk use from a cache (`cachedDisk`) and
 * the whole-table figures from a shared read (`wholeTable`; `rowsAt` says when
 * they were read).
 */
export async function collectReport(
  db: Db,
  config: LisConfig,
  country?: string,
  options: { cachedDisk?: boolean; wholeTable?: () => Promise<{ value: WholeTableFigures; at: Date }> } = {},
) {
  const readWholeTable = options.wholeTable ?? (async () => ({ value: await wholeTableFigures(db, country), at: new Date() }));
  const [whole, queue, lastHour, lastDay, datasources, disk] = await Promise.all([
    readWholeTable(),
    queueDepth(db, country),
    throughput(db, 60, country),
    throughput(db, 24 * 60, country),
    datasourceFailures(db, 24, country),
    options.cachedDisk ? cachedStoreDiskUse(config) : storeDiskUse(config),
  ]);
  const { rows, frontends } = whole.value;
  return {
    at: new Date().toISOString(),
    country: country ?? null,
    rows,
    rowsAt: whole.at.toISOString(),
    queue,
    throughput: { lastHour, lastDay },
    datasources,
    frontends,
    disk,
  };
}
