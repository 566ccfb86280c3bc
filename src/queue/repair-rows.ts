import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import { moveRows } from './move-rows.ts';

/**
 * Repair: rows in states no operation leaves them in (a hand-run UPDATE, a
 * restore from an old backup), put right by db_scan, one rule per statement.
 */
// A worker's silence counts from the database's start at the earliest (see releaseStuckJobs).
function repairRules(staleWorkerSeconds: number): Record<string, { where: RawBuilder<unknown>; set: RawBuilder<unknown> }> {
  const stale = sql`now() - make_interval(secs => ${staleWorkerSeconds})`;
  return {
    done_but_not_live: { where: sql`li.stage <> 'live' AND li.state = 'done'`, set: sql`state = 'waiting', next_attempt_at = now()` },
    live_but_waiting: {
      where: sql`li.stage = 'live' AND li.state = 'waiting' AND li.image_data IS NOT NULL AND li.locked_by IS NULL`,
      set: sql`state = 'done', live_data = image_data`,
    },
    no_image_data_after_thumbnail: {
      where: sql`li.stage IN ('push', 'live') AND li.image_data IS NULL AND li.locked_by IS NULL AND li.state <> 'parked'`,
      set: sql`stage = 'thumbnail', state = 'waiting', attempts = 0, same_error_count = 0, streak_class = NULL, next_attempt_at = now()`,
    },
    locked_but_not_claimable: { where: sql`li.locked_by IS NOT NULL AND li.state <> 'waiting'`, set: sql`locked_by = NULL, locked_at = NULL` },
    locked_by_unknown_worker: {
      where: sql`li.locked_by IS NOT NULL AND li.locked_at < ${stale}
                 AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = li.locked_by AND w.stopped_at IS NULL
                                    AND greatest(w.heartbeat_at, pg_postmaster_start_time()) > ${stale})`,
      set: sql`locked_by = NULL, locked_at = NULL`,
    },
  };
}

/** Runs (or with `dryRun` counts) each repair rule for one country; returns the rows per rule. */
export async function repairImpossibleRows(db: Db, country: string, staleWorkerSeconds: number, dryRun: boolean): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const [name, rule] of Object.entries(repairRules(staleWorkerSeconds))) {
    const where = sql`li.country = ${country} AND ${rule.where}`;
    counts[name] = dryRun
      ? await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images li WHERE ${where}`.execute(db).then((r) => r.rows[0].n)
      : await moveRows(db, where, rule.set);
  }
  return counts;
}
