import type { LisConfig } from '../config/config-schema.ts';
import type { ChunkContext, RowResult, StageWorker } from '../daemon/run-daemon.ts';
import { claimHostFor } from '../daemon/run-daemon.ts';
import { deferredOf, resultKind } from '../daemon/chunk-run.ts';
import type { Db } from '../db/connect.ts';
import { rowResult } from '../download/download-worker.ts';
import type { Logger } from '../log/create-logger.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { claimRow } from '../queue/claim-row.ts';
import { deferRows } from '../queue/defer-rows.ts';
import { failRows } from '../queue/fail-rows.ts';
import { finishRows } from '../queue/finish-rows.ts';
import type { WorkStage } from '../queue/stages.ts';
import { originalPath } from '../store/store-layout.ts';
import { fetchFromCandidates } from './fetch-candidates.ts';
import type { OriginalFetcher } from './host-slots.ts';
import { candidateUrls } from './origin-urls.ts';
import { originalsStoreGuard } from './originals-store-guard.ts';
import type { UnreleasedRows } from './unreleased-rows.ts';
import type { HeldRows } from './held-rows.ts';
import type { OutcomeTally } from '../daemon/outcome-tally.ts';

export interface StageRunner {
  config: LisConfig;
  db: Db;
  /**
   * A pool of its own, `imaged.maxGenerations` connections, for the advisory locks: each generation
   * holds one for its whole run, so they can never take the connections its queries need.
   */
  locks: Db;
  log: Logger;
  workerId: string;
  /** A SchemeFetcher; ThumbnailService puts it behind HostSlots (the downloader's per-host limits). */
  fetcher: OriginalFetcher;
  /** lis_thumbnaild's own stage worker: the thumbnails are made by its code, classification included. */
  thumbnailer: StageWorker;
  /** Aborted once nobody waits for the generation: a download still waiting for its host's turn is left undone. */
  unwanted?: AbortSignal;
  /**
   * Each stage's outcome, by country and stage, for the heartbeat to add to datasource_minutes as the daemons'
   * are: the alerts that read them (s3_refused, s3_unavailable, error rates) see a trouble lis_imaged met too.
   */
  outcomes?: OutcomeTally;
}

/** How far this process took a queued row: `claimed: false` when a daemon (or another lis_imaged) holds it. */
export type StagesOutcome = { claimed: false } | { claimed: true; result: RowResult; stage: WorkStage };

/**
 * A row still in the queue, worked now for a request: claimed by id (so no
 * daemon takes it meanwhile), then its remaining stages up to `push` done
 * here through the queue's operations, each stage ending as a daemon's
 * would: finishRows, failRows for the source's faults, deferRows (given back
 * uncharged) for ours. The row is then lis_pusherd's as usual.
 * Between stages the row is claimed again; if a daemon got it in that
 * instant, the caller waits for it like for any held row.
 */
export async function runRowStages(
  runner: StageRunner,
  rowId: string,
  signal: AbortSignal,
  unreleased: UnreleasedRows,
  held: HeldRows,
): Promise<StagesOutcome> {
  let last: StagesOutcome = { claimed: false };
  for (;;) {
    // A release still owed for this row goes first: given back later, it would take the row from under this claim.
    await unreleased.settle(rowId);
    let row: Awaited<ReturnType<typeof claimRow>>;
    try {
      row = await held.claim(rowId, () => claimRow(runner.db, rowId, runner.workerId, claimHostFor('thumbnail', runner.config)));
    } catch (error) {
      // The claim may have been committed with its answer lost on the way back (a path that hung): the row would
      // stay locked by this live process, which lis_managerd never takes for dead. Given back (a no-op if it was not taken).
      await unreleased.giveBack(rowId);
      throw error;
    }
    if (!row) return last;
    let result: RowResult | null;
    try {
      result = await workStage(runner, row, signal, unreleased);
    } finally {
      // Ended, given back, or owed back (UnreleasedRows): no longer a row a request has in hand.
      held.done(row.id);
    }
    if (!result) return last;
    last = { claimed: true, result, stage: row.stage };
    runner.log.info(`${row.country}/${row.image_hash}: ${row.stage} ${result.ok ? 'done' : `failed: ${result.failure.errorClass}`} on request`, {
      scope: 'Imaged::stage',
    });
    if (!result.ok || row.stage === 'thumbnail' || (result.row.toStage && result.row.toStage !== 'thumbnail')) return last;
  }
}

/**
 * The claimed row's stage, ended as a daemon's chunk would end it; null when the stage gave no verdict (a database or
 * internal fault) and the row went back untouched. Whatever fails (the stage, or the database under its end), the
 * claim does not outlive the request: the row is given back.
 */
async function workStage(
  runner: StageRunner,
  row: ClaimedRow & { stage: WorkStage },
  signal: AbortSignal,
  unreleased: UnreleasedRows,
): Promise<RowResult | null> {
  let result: RowResult | null;
  try {
    result = row.stage === 'download' ? await downloadStage(runner, row) : await thumbnailStage(runner, row, signal);
    if (result) {
      await endStage(runner, row.stage, result);
      runner.outcomes?.add(row.datasource_id, result.ok ? '' : result.failure.errorClass, { country: row.country, stage: row.stage });
    }
  } catch (error) {
    await unreleased.giveBack(row.id);
    throw error;
  }
  if (!result) await unreleased.giveBack(row.id);
  return result;
}

/** Ends a stage as a daemon's chunk would: finished, the source's failure charged, or ours given back uncharged. */
async function endStage(runner: StageRunner, stage: WorkStage, result: RowResult): Promise<void> {
  const { db, workerId, config } = runner;
  if (result.ok) return void (await finishRows(db, workerId, stage, [result.row]));
  // Our fault (a store full, read-only or unreadable, a lost original) costs the row nothing, as in the daemons:
  // failRows would count an attempt, and after queue.maxAttempts fail the row for good for a disk of ours.
  if (resultKind(result) === 'ours') return void (await deferRows(db, workerId, [deferredOf(result.failure, config.queue.oursRetrySeconds)]));
  await failRows(db, workerId, [result.failure], { maxAttempts: config.queue.maxAttempts, backoff: config.queue.backoff });
}

/**
 * The download stage for one row: its URL (and an origin's fallbacks, in parallel), under the downloader's limits;
 * null (the row given back untouched, as a daemon's unstarted rows at a stop) when its fetch was left undone,
 * still waiting for its host's turn when nobody wanted the generation any more.
 */
async function downloadStage(runner: StageRunner, row: ClaimedRow): Promise<RowResult | null> {
  const { config } = runner;
  const outcome = await fetchFromCandidates(
    runner.fetcher,
    candidateUrls(row.image_url, config.imaged.origins),
    originalPath(config, row.country, row.image_hash),
    config,
    originalsStoreGuard(runner.db, config),
  );
  if (runner.unwanted?.aborted && outcome.kind === 'failed' && outcome.failure.reason === 'stopped') return null;
  return rowResult(row, outcome, config.stores.shared ? '' : config.host);
}

/** The thumbnail stage for one row, by lis_thumbnaild's worker; null when it gave the row back. */
async function thumbnailStage(runner: StageRunner, row: ClaimedRow, signal: AbortSignal): Promise<RowResult | null> {
  let result: RowResult | null = null;
  const ctx: ChunkContext = { signal, log: runner.log, report: (r) => (result = r) };
  await runner.thumbnailer.processChunk([row], ctx);
  return result;
}
