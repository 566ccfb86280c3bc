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
  /** Rows of the batch this worker no longer held (the manager released them): nothing was written for them. */
  lost: number;
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
    outcome = { done, failed, deferred, lost: total - done - failed - deferred };
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
