import crypto from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { releaseAllHeldBy } from '../queue/release-rows.ts';
import type { OutcomeCount } from './outcome-tally.ts';
import type { StoreIdentities } from '../db/schema.ts';
import { PACKAGE_VERSION } from '../util/package-root.ts';

export interface WorkerIdentity {
  id: string;
  component: string;
  host: string;
  pid: number;
  country: string | null;
  stage?: string | null;
  /** Its host's stores (storeIdentities), checked against the other live workers of its host name at start. */
  stores?: StoreIdentities | null;
}

/**
 * `host:pid:random`: host and pid for the operator (`ps`), and a random part
 * because containers sharing a host name all run as pid 1: two of them must
 * never take each other's rows.
 */
export function workerIdFor(host: string, pid: number): string {
  return `${host}:${pid}:${crypto.randomBytes(4).toString('hex')}`;
}

/**
 * Records the worker as started. A row with our id belongs to a dead process
 * that had our pid on this host (we are alive, so it is not): whatever it
 * still held is given back first, so that nothing looks held by us that we
 * never claimed.
 */
export async function registerWorker(db: Db, worker: WorkerIdentity): Promise<number> {
  const released = await releaseAllHeldBy(db, worker.id);
  await reviveWorker(db, worker);
  return released;
}

/**
 * Records the worker as started, its figures from nought, keeping what it holds: for a live worker the
 * manager marked stopped (silent through a database outage), whose rows the manager released then; a row
 * it claimed since is in hand and stays its own.
 */
export async function reviveWorker(db: Db, worker: WorkerIdentity): Promise<void> {
  await db
    .insertInto('workers')
    .values({ ...worker, stores: storesColumn(worker), release: PACKAGE_VERSION, rows_done: 0, rows_failed: 0, progress_at: sql`now()` })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        component: worker.component,
        country: worker.country,
        started_at: sql`now()`,
        heartbeat_at: sql`now()`,
        stopped_at: null,
        progress_at: sql`now()`,
        paused_reason: null,
        paused_since: null,
        rows_done: 0,
        rows_failed: 0,
        holding: 0,
        stage: worker.stage ?? null,
        stores: storesColumn(worker),
        release: PACKAGE_VERSION,
      }),
    )
    .execute();
}

export interface Beat {
  done: number;
  failed: number;
  /** Rows given back for our own fault that the stage's error rate counts (ownedByStageErrorRate). */
  ours?: number;
  /** Rows held right now. */
  holding: number;
  stage?: string;
  country?: string;
  /** True when a row of its chunks was finished, failed or given back since the last beat, or it holds none: liveness by progress. */
  progressed?: boolean;
  /** Outcomes per datasource since the last beat ('' = done), each of the beat's country and stage unless it names its own. */
  outcomes?: OutcomeCount[];
}

function storesColumn(worker: WorkerIdentity): string | null {
  return worker.stores ? JSON.stringify(worker.stores) : null;
}

/**
 * Says we are alive, what we hold, and adds what we did since the last beat
 * to our totals and to this minute's counts, in one transaction. Returns false,
 * writing nothing, when the manager has marked us stopped (silent or wedged too
 * long) and released our rows: a beat never revives a worker; the caller drops
 * its chunks and registers again.
 *
 * One transaction, not the worker's statement and then the datasources' apart: a beat that failed between them
 * had its totals written and was sent again whole (the caller restores a failed beat), counting them twice; and
 * a stop's mark (markStopped, which waits for the worker row's lock) could land between them, so that a worker
 * marked stopped did not yet have its last outcomes in datasource_minutes.
 */
export async function heartbeat(db: Db, workerId: string, beat: Beat): Promise<boolean> {
  return db.transaction().execute((trx) => beatIn(trx, workerId, beat));
}

async function beatIn(db: Db, workerId: string, beat: Beat): Promise<boolean> {
  const { rows } = await sql<{ alive: boolean }>`
    WITH w AS (
      UPDATE workers
         SET heartbeat_at = now(), holding = ${beat.holding},
             progress_at = CASE WHEN ${beat.progressed ?? true}::boolean THEN now() ELSE progress_at END,
             rows_done = rows_done + ${beat.done}, rows_failed = rows_failed + ${beat.failed}
       WHERE id = ${workerId} AND stopped_at IS NULL
      RETURNING id, component, country),
    m AS (
      INSERT INTO worker_minutes (worker_id, minute, component, country, done, failed, ours)
      SELECT id, date_trunc('minute', now()), component, country, ${beat.done}, ${beat.failed}, ${beat.ours ?? 0} FROM w
       WHERE ${beat.done + beat.failed + (beat.ours ?? 0)} > 0
      ON CONFLICT (worker_id, minute) DO UPDATE
        SET done = worker_minutes.done + EXCLUDED.done, failed = worker_minutes.failed + EXCLUDED.failed,
            ours = worker_minutes.ours + EXCLUDED.ours)
    SELECT count(*) > 0 AS alive FROM w`.execute(db);
  if (!rows[0]?.alive) return false;
  const outcomes = (beat.outcomes ?? [])
    .map((o) => ({ ...o, country: o.country ?? beat.country, stage: o.stage ?? beat.stage }))
    .filter((o): o is OutcomeCount & { country: string; stage: string } => Boolean(o.country && o.stage));
  if (outcomes.length) {
    await sql`
      INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n)
      SELECT k, d, date_trunc('minute', now()), s, c, n
        FROM unnest(${outcomes.map((o) => o.country)}::text[], ${outcomes.map((o) => o.stage)}::text[], ${outcomes.map((o) => o.datasourceId)}::int[],
                    ${outcomes.map((o) => o.errorClass)}::text[], ${outcomes.map((o) => o.n)}::int[]) AS v(k, s, d, c, n)
      ON CONFLICT (country, datasource_id, minute, stage, error_class) DO UPDATE SET n = datasource_minutes.n + EXCLUDED.n`.execute(db);
  }
  return true;
}

/** Records why the worker stopped claiming (a store full or unwritable), or clears it (null) when it resumes. */
export async function setPaused(db: Db, workerId: string, reason: string | null): Promise<void> {
  await db
    .updateTable('workers')
    .set(reason === null ? { paused_reason: null, paused_since: null } : { paused_reason: reason, paused_since: sql`coalesce(paused_since, now())` })
    .where('id', '=', workerId)
    .execute();
}

/**
 * Marks the worker stopped. `leftHeld`: rows it may still hold as it goes (a give-back the database refused or left
 * unanswered, a claim left unanswered): kept in `holding`, so that lis_managerd's stuck_jobs releases them. A stopped
 * worker was never looked at again, and its rows stayed locked until the weekly db_scan's repair.
 */
export async function markStopped(db: Db, workerId: string, leftHeld = 0): Promise<void> {
  await db
    .updateTable('workers')
    .set({ stopped_at: sql`now()`, heartbeat_at: sql`now()`, holding: leftHeld })
    .where('id', '=', workerId)
    .execute();
}
