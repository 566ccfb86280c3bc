import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { workerReport } from '../manager/worker-report.ts';
import { collectReport, wholeTableFigures } from '../metrics/collect-report.ts';
import { throughputSeries } from '../queue/queue-figures.ts';
import { sharedRead } from '../util/shared-read.ts';

/** Rows by state and frontend lag scan live_images whole: at most this often, whoever is looking. */
const WHOLE_TABLE_MAX_AGE_MS = 60_000;

/** Everything the status page shows, in one JSON document: a reader for one server, its whole-table figures shared by all its viewers. */
export function overviewReader(db: Db, config: LisConfig) {
  const wholeTable = sharedRead(() => wholeTableFigures(db), WHOLE_TABLE_MAX_AGE_MS);
  return async () => {
    const [report, workers, throughput, queue, events] = await Promise.all([
      collectReport(db, config, undefined, { cachedDisk: true, wholeTable }),
      workerReport(db, config.manager.staleWorkerSeconds),
      throughputSeries(db, 24 * 60),
      sql<{ at: Date; stage: string; due: number; later: number; held: number }>`
        SELECT at, stage, sum(due)::int AS due, sum(later)::int AS later, sum(held)::int AS held FROM queue_samples
         WHERE at > now() - interval '24 hours' GROUP BY 1, 2 ORDER BY 1, 2`
        .execute(db)
        .then((r) => r.rows),
      db.selectFrom('manager_events').selectAll().orderBy('at', 'desc').limit(20).execute(),
    ]);
    return { ...report, workers, series: { throughput, queue }, events };
  };
}
