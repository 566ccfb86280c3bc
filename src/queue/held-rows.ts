import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { ClaimScope } from './release-rows.ts';

/** Rows of a claim scope that another worker holds: how many, by how many workers, and the one holding the most. */
export interface HeldRows {
  rows: number;
  workers: number;
  /** The worker holding the most of them, and its last heartbeat (null: no such worker registered). */
  topWorker: string | null;
  topHeartbeat: Date | null;
  /** The database's clock as it read them: what `topHeartbeat` is relative to (toHostClock); null when none is held. */
  dbNow: Date | null;
}

/**
 * The rows a worker's claims would take but that other workers hold: a service working them, or a process that
 * died holding them (a second Ctrl-C, a kill), which only lis_managerd's stuck_jobs releases. What a run by hand
 * says as it ends with "No rows gained", or the operator takes them for done. One read of the country's backlog
 * (live_images_waiting), once at the end of a run.
 */
export async function heldByOthers(db: Db, scope: ClaimScope): Promise<HeldRows> {
  const { rows } = await sql<{ worker: string; n: number; heartbeat_at: Date | null; db_now: Date }>`
    SELECT li.locked_by AS worker, count(*)::int AS n, max(w.heartbeat_at) AS heartbeat_at, now() AS db_now
      FROM live_images li LEFT JOIN workers w ON w.id = li.locked_by
     WHERE li.state = 'waiting' AND li.country = ${scope.country} AND li.stage = ${scope.stage} AND li.store_host = ${scope.storeHost}
       AND li.locked_by IS NOT NULL AND li.locked_by <> ${scope.workerId}
     GROUP BY 1 ORDER BY 2 DESC, 1`.execute(db);
  return {
    rows: rows.reduce((n, r) => n + r.n, 0),
    workers: rows.length,
    topWorker: rows[0]?.worker ?? null,
    topHeartbeat: rows[0]?.heartbeat_at ?? null,
    dbNow: rows[0]?.db_now ?? null,
  };
}
