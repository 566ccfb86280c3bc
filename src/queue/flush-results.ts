import type { Db } from '../db/connect.ts';
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
  /** Rows of the batch this worker no longer held (the manager released them): nothing was written for them. */
  lost: number;
}

/**
 * Writes a batch of a worker's results in one transaction: finished rows move
 * on, the source's failures are charged, our own faults given back. Either all
 * of it lands or none, so a retry after an error never meets rows it moved
 * itself and mistakes them for rows it lost.
 */
export async function flushResults(db: Db, workerId: string, stage: WorkStage, batch: ResultBatch, policy: FailurePolicy): Promise<FlushOutcome> {
  const total = batch.finished.length + batch.failures.length + batch.deferred.length;
  if (total === 0) return { done: 0, failed: 0, deferred: 0, lost: 0 };
  return db.transaction().execute(async (trx) => {
    const done = await finishRows(trx, workerId, stage, batch.finished);
    const failed = (await failRows(trx, workerId, batch.failures, policy)).updated;
    const deferred = await deferRows(trx, workerId, batch.deferred);
    return { done, failed, deferred, lost: total - done - failed - deferred };
  });
}
