import type { RowFailure } from '../queue/fail-rows.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import type { DeferredRow } from '../queue/defer-rows.ts';
import type { ResultBatch } from '../queue/flush-results.ts';
import type { FinishedRow } from '../queue/finish-rows.ts';
import { isDatabaseOutage } from '../db/database-error.ts';
import { errorMessage } from '../errors.ts';
import { failureReason } from '../failure/failure-reasons.ts';

export type RowResult = { ok: true; row: FinishedRow } | { ok: false; failure: RowFailure };

/** Whose fault a result is: the row's (done or a source fault, written as such) or ours (given back uncharged). */
export type ResultKind = 'done' | 'source' | 'ours';

/** Pure: a result's kind, by the failure taxonomy; a class it does not know is our bug, never the row's. */
export function resultKind(result: RowResult): ResultKind {
  if (result.ok) return 'done';
  return failureReason(result.failure.errorClass).owner === 'source' ? 'source' : 'ours';
}

/**
 * One claimed chunk while the stage works it: which rows were reported, the
 * results not yet written, when it last made progress, and a signal of its
 * own, so that it can be dropped (its rows were released, or it is wedged)
 * without stopping the daemon or the other chunks.
 */
export class ChunkRun {
  readonly controller = new AbortController();
  readonly signal: AbortSignal;
  readonly reported = new Set<string>();
  readonly datasourceOf: Map<string, number>;
  private pending: ResultBatch = { finished: [], failures: [], deferred: [] };
  private pendingCount = 0;
  /** On the monotonic clock (performance.now()): a step of the wall clock is no progress, nor its lack. */
  lastProgressAt = performance.now();
  /** Set when its rows are no longer ours: later reports are ignored, nothing more is written. */
  dropped = false;
  /** Its writes, one after another. */
  flushing: Promise<void> = Promise.resolve();

  constructor(
    readonly rows: ClaimedRow[],
    readonly claimedAt: number,
    stop: AbortSignal,
  ) {
    this.signal = AbortSignal.any([stop, this.controller.signal]);
    this.datasourceOf = new Map(rows.map((r) => [r.id, r.datasource_id]));
  }

  /** Rows claimed and not yet reported. */
  get unreported(): number {
    return this.dropped ? 0 : this.rows.length - this.reported.size;
  }

  get pendingResults(): number {
    return this.pendingCount;
  }

  /** Records a result once; false when it is a repeat, or the chunk was dropped. */
  add(result: RowResult, oursDelaySeconds: number): ResultKind | null {
    const id = result.ok ? result.row.id : result.failure.id;
    if (this.dropped || this.reported.has(id) || !this.datasourceOf.has(id)) return null;
    this.reported.add(id);
    this.lastProgressAt = performance.now();
    const kind = resultKind(result);
    if (result.ok) this.pending.finished.push(result.row);
    else if (kind === 'source') this.pending.failures.push(result.failure);
    else this.pending.deferred.push(deferredOf(result.failure, oursDelaySeconds));
    this.pendingCount++;
    return kind;
  }

  /** The results to write now, and a fresh start. */
  take(): ResultBatch {
    const batch = this.pending;
    this.pending = { finished: [], failures: [], deferred: [] };
    this.pendingCount = 0;
    return batch;
  }

  unreportedRows(): ClaimedRow[] {
    return this.rows.filter((r) => !this.reported.has(r.id));
  }

  unreportedIds(): string[] {
    return this.unreportedRows().map((r) => r.id);
  }

  /** Tells the stage to start no new row of this chunk (a store fault: the rest is given back). */
  stopStarting(): void {
    this.controller.abort(new Error('chunk stopped'));
  }

  drop(): void {
    this.dropped = true;
    this.pending = { finished: [], failures: [], deferred: [] };
    this.pendingCount = 0;
    this.controller.abort(new Error('chunk dropped'));
  }
}

/**
 * Pure: our fault becomes a give-back with a short fixed delay: store faults pause the stage, the rest wait that
 * long, or as long as the result says (`retryAfterSeconds`: a row held back because its host asked us to wait).
 */
export function deferredOf(failure: RowFailure, oursDelaySeconds: number): DeferredRow {
  // Store faults pause claiming, so the row may come back as soon as the store is fine again.
  const delaySeconds = isStoreFault(failure.errorClass) ? 0 : (failure.retryAfterSeconds ?? oursDelaySeconds);
  return { id: failure.id, reason: failure.reason, errorClass: failure.errorClass, delaySeconds };
}

/**
 * Pure: what becomes of the rows a chunk left unreported when its stage threw (a stage reports its rows'
 * failures itself, so a throw is our bug, or an outage inside the stage): each is our fault, given back uncharged
 * to wait queue.oursRetrySeconds like any result of ours: `database` when the error says the database went away
 * or stopped answering (isDatabaseOutage: a restart, a lost path), which the operators' alerts on the database
 * cover; else `internal`, a bug, which the stage's error-rate alert counts. Given back at once instead, they would be
 * claimed again at once and thrown on again: a hot loop for a service, and a run by hand that never ends.
 * None when the chunk was stopped first (the daemon's stop, the chunk dropped, our store failing): the throw may
 * be the stop's own (an aborted read), and the rows go to the next worker at once, as the stop promises.
 */
export function thrownChunkResults(unreported: ClaimedRow[], error: unknown, stopped: boolean): RowResult[] {
  if (stopped) return [];
  const reason = `the stage threw on its chunk: ${errorMessage(error)}`;
  const errorClass = isDatabaseOutage(error) ? 'database' : 'internal';
  return unreported.map((row) => ({ ok: false, failure: { id: row.id, attempts: row.attempts, reason, errorClass, retryable: true } }));
}

/** Classes that mean a store of ours cannot be used (written, or read at all): the stage pauses until it can. */
export function isStoreFault(errorClass: string): boolean {
  return errorClass === 'store_write_failed' || errorClass === 'store_paused';
}
