import { permanentSqlState } from '../db/database-error.ts';
import type { Db } from '../db/connect.ts';
import { LisError, errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import type { FailurePolicy } from '../queue/fail-rows.ts';
import { commitStatus, type CommitStatus } from '../queue/commit-status.ts';
import { FlushInDoubt, flushResults, type FlushOutcome, type ResultBatch } from '../queue/flush-results.ts';
import type { WorkStage } from '../queue/stages.ts';
import { abortableDelay } from '../util/abortable-delay.ts';
import { backoffDelayMs } from '../util/retry-with-backoff.ts';
import type { ChunkRun } from './chunk-run.ts';

/** A database error that no retry can fix (bad SQL, a missing column): the daemon stops with it. */
export class PermanentDatabaseError extends LisError {
  constructor(what: string, sqlState: string, cause: unknown) {
    super('ERR_DATABASE_PERMANENT', `${what}: ${errorMessage(cause)} (SQLSTATE ${sqlState}: retrying cannot fix this; stopping)`, { cause });
  }
}

/** Throws PermanentDatabaseError for an error that retrying cannot fix; returns for an outage. */
export function rethrowIfPermanent(what: string, error: unknown): void {
  const state = permanentSqlState(error);
  if (state) throw new PermanentDatabaseError(what, state, error);
}

export interface WriterOptions {
  db: Db;
  workerId: () => string;
  stage: WorkStage;
  policy: FailurePolicy;
  log: Logger;
  scope: string;
  /** The daemon's stop: an outage is waited out only until then. */
  signal: AbortSignal;
  onWritten: (outcome: FlushOutcome) => void;
}

/**
 * The waits between asks about a COMMIT still in progress on the server (about 16 s in all). One sent just
 * before its answer was lost ends in moments, unless the server waits on its disk or a standby; past these,
 * the results are written again: that write waits on the row locks the earlier transaction holds, so the
 * rows come out right either way, and only its count may be wrong (rows it finds moved, said lost).
 */
const IN_PROGRESS_WAITS_MS = [250, 500, 1000, 2000, 4000, 8000];

/** What became of transaction `xid`, asked again while it is still in progress (IN_PROGRESS_WAITS_MS) until the stop. */
async function settledStatus(db: WriterOptions['db'], xid: string, signal: AbortSignal): Promise<CommitStatus> {
  let status = await commitStatus(db, xid);
  for (const ms of IN_PROGRESS_WAITS_MS) {
    if (status !== 'in progress' || signal.aborted) break;
    await abortableDelay(ms, signal);
    status = await commitStatus(db, xid);
  }
  return status;
}

/**
 * Writes a chunk's pending results (one transaction per batch), waiting out a
 * database outage with backoff. It gives up at once when the daemon is
 * stopping (the manager releases the rows) or the chunk was dropped, and
 * throws PermanentDatabaseError when retrying cannot help. A write whose
 * COMMIT went unanswered (FlushInDoubt) is asked about before it is written
 * again: had it committed, the retry would find the rows moved and take them
 * for rows the manager released.
 */
export async function writeResults(chunk: ChunkRun, options: WriterOptions): Promise<void> {
  const batch: ResultBatch = chunk.take();
  const count = batch.finished.length + batch.failures.length + batch.deferred.length;
  if (count === 0) return;
  const { log } = options;
  const written = (outcome: FlushOutcome) => {
    const deleted = outcome.deleted ?? 0;
    if (deleted > 0)
      log.warn(
        `${deleted} rows were deleted from live_images while this worker held them (a DELETE by hand or by an ETL, not the manager): their results were dropped`,
        { scope: options.scope },
      );
    if (outcome.lost > deleted)
      log.warn(`Lost the lock on ${outcome.lost - deleted} rows (released by the manager?); their results were not written`, { scope: options.scope });
    options.onWritten(outcome);
  };
  let inDoubt: FlushInDoubt | null = null;
  for (let attempt = 1; ; attempt++) {
    if (chunk.dropped) return;
    try {
      if (inDoubt) {
        const status = await settledStatus(options.db, inDoubt.xid, options.signal);
        if (status === 'committed') {
          log.info(`The earlier write of ${count} results committed (its answer was lost): not writing them again`, { scope: options.scope });
          written(inDoubt.outcome);
          return;
        }
        log.warn(
          `The earlier write of ${count} results ${status === 'in progress' ? 'is still in progress on the server' : 'did not commit'} (transaction ${inDoubt.xid}): writing them again`,
          { scope: options.scope },
        );
        inDoubt = null;
      }
      written(await flushResults(options.db, options.workerId(), options.stage, batch, options.policy));
      return;
    } catch (error) {
      if (error instanceof FlushInDoubt) inDoubt = error;
      rethrowIfPermanent(`Cannot write ${count} results`, error);
      if (options.signal.aborted) {
        log.error(`Could not write ${count} results, giving up as we are stopping: ${errorMessage(error)}; the manager will release the rows`, {
          scope: options.scope,
        });
        return;
      }
      log.error(`Could not write ${count} results (try ${attempt}): ${errorMessage(error)}`, { scope: options.scope });
      await abortableDelay(backoffDelayMs(attempt), options.signal);
    }
  }
}
