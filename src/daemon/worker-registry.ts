import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { releaseAllHeldBy } from '../queue/release-rows.ts';

export interface WorkerIdentity {
  id: string;
  component: string;
  host: string;
  pid: number;
  country: string | null;
}

/** `host:pid`: unique among live processes, and what an operator sees in `ps`. */
export function workerIdFor(host: string, pid: number): string {
  return `${host}:${pid}`;
}

/**
 * Records the worker as started. A row with our id belongs to a dead process
 * that had our pid on this host (we are alive, so it is not): whatever it
 * still held is given back first, so that nothing looks held by us that we
 * never claimed.
 */
export async function registerWorker(db: Db, worker: WorkerIdentity): Promise<number> {
  const released = await releaseAllHeldBy(db, worker.id);
  await db
    .insertInto('workers')
    .values({ ...worker, rows_done: 0, rows_failed: 0 })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        component: worker.component,
        country: worker.country,
        started_at: sql`now()`,
        heartbeat_at: sql`now()`,
        stopped_at: null,
        rows_done: 0,
        rows_failed: 0,
      }),
    )
    .execute();
  return released;
}

/** Says we are alive, and adds what we did since the last beat. */
export async function heartbeat(db: Db, workerId: string, done: number, failed: number): Promise<void> {
  await db
    .updateTable('workers')
    .set({
      heartbeat_at: sql`now()`,
      rows_done: sql`rows_done + ${done}`,
      rows_failed: sql`rows_failed + ${failed}`,
    })
    .where('id', '=', workerId)
    .execute();
}

export async function markStopped(db: Db, workerId: string): Promise<void> {
  await db.updateTable('workers').set({ stopped_at: sql`now()`, heartbeat_at: sql`now()` }).where('id', '=', workerId).execute();
}
