import { permanentSqlState } from '../db/database-error.ts';
import type { Db } from '../db/connect.ts';
import { LisError, errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import type { FailurePolicy } from '../queue/fail-rows.ts';
import { flushResults, type FlushOutcome, type ResultBatch } from '../queue/flush-results.ts';
import type { WorkStage } from '../queue/stages.ts';
import { abortableDelay } from '../util/abortable-delay.ts';
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
 * Writes a chunk's pending results (one transaction per batch), waiting out a
 * database outage with backoff. It gives up at once when the daemon is
 * stopping (the manager releases the rows) or the chunk was dropped, and
 * throws PermanentDatabaseError when retrying cannot help.
 */
export async function writeResults(chunk: ChunkRun, options: WriterOptions): Promise<void> {
  const batch: ResultBatch = chunk.take();
  const count = batch.finished.length + batch.failures.length + batch.deferred.length;
  if (count === 0) return;
  const { log } = options;
  for (let attempt = 1; ; attempt++) {
    if (chunk.dropped) return;
    try {
      const outcome = await flushResults(options.db, options.workerId(), options.stage, batch, options.policy);
      if (outcome.lost > 0)
        log.warn(`Lost the lock on ${outcome.lost} rows (released by the manager?); their results were not written`, { scope: options.scope });
      options.onWritten(outcome);
      return;
    } catch (error) {
      rethrowIfPermanent(`Cannot write ${count} results`, error);
      if (options.signal.aborted) {
        log.error(`Could not write ${count} results, giving up as we are stopping: ${errorMessage(error)}; the manager will release the rows`, {
          scope: options.scope,
        });
        return;
      }
      log.error(`Could not write ${count} results (try ${attempt}): ${errorMessage(error)}`, { scope: options.scope });
      await abortableDelay(Math.min(30_000, 500 * 2 ** attempt), options.signal);
    }
  }
}
