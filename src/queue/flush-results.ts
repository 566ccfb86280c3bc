import { sql, type ControlledTransaction } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { Database } from '../db/schema.ts';
import { LisError, errorMessage } from '../errors.ts';
import { deferRows, type DeferredRow } from './defer-rows.ts';
import { failRows, type FailurePolicy, type RowFailure } from './fail-rows.ts';
import { finishRows, type FinishedRow } from './finish-rows.ts';
import type { WorkStage } from './stages.ts';

export interface ResultBatch {
  finished: FinishedRow[];
  /** The source's faults: charged an attempt. */
  failures: RowFailure[];
  /** Our own faults: given back uncharged. */
  deferred: DeferredRow[];
}

export interface FlushOutcome {
  done: number;
  failed: number;
  deferred: number;
  /** Rows of the batch this worker no longer held (the manager released them, or they were deleted): nothing was written for them. */
  lost: number;
  /** Of `lost`, the rows no longer in live_images (a DELETE by hand or by an ETL while held); present only when some were. */
  deleted?: number;
}

/**
 * A flush whose COMMIT was sent and got no answer (the path or the server went away meanwhile): the server may
 * have committed it or not. `xid` is its transaction's id, for commitStatus (commit-status.ts) to ask the
 * server later, and `outcome` what it wrote if it did commit. The error that ended it is the cause.
 */
export class FlushInDoubt extends LisError {
  constructor(
    readonly xid: string,
    readonly outcome: FlushOutcome,
    cause: unknown,
  ) {
    super('ERR_FLUSH_IN_DOUBT', `the commit of transaction ${xid} was not confirmed: ${errorMessage(cause)}`, { cause });
    this.name = 'FlushInDoubt';
  }
}

/**
 * Writes a batch of a worker's results in one transaction: finished rows move
 * on, the source's failures are charged, our own faults given back. Either all
 * of it lands or none, so a retry after an error never meets rows it moved
 * itself and mistakes them for rows it lost; and when the error came with the
 * COMMIT (whose answer may be lost after the server ran it), FlushInDoubt says
 * which transaction to ask about before writing again.
 */
export async function flushResults(db: Db, workerId: string, stage: WorkStage, batch: ResultBatch, policy: FailurePolicy): Promise<FlushOutcome> {
  const total = batch.finished.length + batch.failures.length + batch.deferred.length;
  if (total === 0) return { done: 0, failed: 0, deferred: 0, lost: 0 };
  const trx = await db.startTransaction().execute();
  let xid: string;
  let outcome: FlushOutcome;
  try {
    // One short round trip more per batch: the id must be known before the COMMIT is sent, and the
    // transitions' statements (shared with other operations) return rows, not it.
    ({ xid } = (await sql<{ xid: string }>`SELECT pg_current_xact_id()::text AS xid`.execute(trx)).rows[0]);
    const done = await finishRows(trx, workerId, stage, batch.finished);
    const failed = (await failRows(trx, workerId, batch.failures, policy)).updated;
    const deferred = await deferRows(trx, workerId, batch.deferred);
    const lost = total - done - failed - deferred;
    outcome = { done, failed, deferred, lost };
    // Which of them are gone from the table, not held by another: each needs its own words (and its own culprit).
    const deleted = lost > 0 ? await countDeleted(trx, batchIds(batch)) : 0;
    if (deleted > 0) outcome.deleted = deleted;
  } catch (error) {
    await giveUp(trx);
    throw error;
  }
  try {
    await trx.commit().execute();
  } catch (error) {
    await giveUp(trx);
    throw new FlushInDoubt(xid, outcome, error);
  }
  return outcome;
}

/** Every row id of a batch. */
function batchIds(batch: ResultBatch): string[] {
  return [...batch.finished.map((r) => r.id), ...batch.failures.map((r) => r.id), ...batch.deferred.map((r) => r.id)];
}

/**
 * How many of `ids` are no longer rows of live_images. Read in the flush's transaction after its writes: a row it
 * wrote cannot be deleted before it commits (its lock), so a row missing now was gone before the write.
 */
async function countDeleted(trx: ControlledTransaction<Database>, ids: string[]): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM unnest(${ids}::bigint[]) AS v(id) WHERE NOT EXISTS (SELECT 1 FROM live_images li WHERE li.id = v.id)`.execute(trx);
  return rows[0].n;
}

/**
 * Ends a transaction that failed: a rollback, which also gives its connection back to the pool (a failed
 * commit keeps it). On a lost connection the rollback fails at once, and nothing more is to be done.
 */
async function giveUp(trx: ControlledTransaction<Database>): Promise<void> {
  await trx
    .rollback()
    .execute()
    .catch(() => {});
}
