import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { ClaimCursor } from '../queue/claim-cursor.ts';
import { failRows, type RowFailure } from '../queue/fail-rows.ts';
import { finishRows, type FinishedRow } from '../queue/finish-rows.ts';
import { releaseRows } from '../queue/release-rows.ts';
import type { WorkStage } from '../queue/stages.ts';
import { WorkNotifier } from '../queue/work-notifier.ts';
import { OutcomeTally } from './outcome-tally.ts';
import { abortableDelay } from './signals.ts';
import { heartbeat, markStopped, registerWorker, workerIdFor } from './worker-registry.ts';

export type RowResult = { ok: true; row: FinishedRow } | { ok: false; failure: RowFailure };

export interface ChunkContext {
  /** Aborted on SIGTERM/SIGINT: finish the rows in hand, start no new one. */
  signal: AbortSignal;
  log: Logger;
  /** Call once per row as soon as it is done; rows never reported are given back. */
  report(result: RowResult): void;
}

/** What a daemon brings to the runner: its stage and how it works a chunk. */
export interface StageWorker {
  /** `downloadd`: log file names and the workers table. */
  component: string;
  /** `Download`: the first part of log scopes such as `Download::get_chunk_of_work`. */
  scope: string;
  stage: WorkStage;
  processChunk(rows: ClaimedRow[], ctx: ChunkContext): Promise<void>;
  close?(): Promise<void>;
}

export interface RunOptions {
  config: LisConfig;
  db: Db;
  /** For LISTEN; service mode only. */
  databaseUrl: string;
  log: Logger;
  country: string;
  chunkSize: number;
  /** Service mode waits for work; a run by hand exits when no rows are gained. */
  service: boolean;
  signal: AbortSignal;
  /** Several workers in one process (tests, benchmarks) need ids of their own; default `host:pid`. */
  workerId?: string;
  observer?: RunObserver;
  /** Called after each flush, for progress lines and tests. */
  onProgress?: (totals: RunTotals) => void;
  /** Called once the worker is registered and listening: the daemon's readiness signal. */
  onReady?: () => void;
}

/** Hooks for metrics: what the runner saw, as it happens. */
export interface RunObserver {
  onClaim(stage: WorkStage, seconds: number, rows: number): void;
  onResult(stage: WorkStage, result: RowResult, secondsSinceClaim: number): void;
  onHeartbeat(): void;
}

export interface RunTotals {
  chunks: number;
  done: number;
  failed: number;
  released: number;
}

/** Results are written in batches of this many, and at the end of each chunk. */
const FLUSH_EVERY = 100;

/** Rows of a stage this host may claim: downloads anywhere; later stages only where the files are. */
export function claimHostFor(stage: WorkStage, config: LisConfig): string {
  return stage === 'download' || config.stores.shared ? '' : config.host;
}

/**
 * The chunk loop every daemon shares: register, claim a chunk, let the stage
 * work it, write the results in batches, repeat; give back what was not done
 * when told to stop. Database outages are waited out, never fatal.
 */
export async function runDaemon(worker: StageWorker, options: RunOptions): Promise<RunTotals> {
  const { config, db, log, country, signal } = options;
  const workerId = options.workerId ?? workerIdFor(config.host, process.pid);
  const scope = (fn: string) => ({ scope: `${worker.scope}::${fn}` });
  const totals: RunTotals = { chunks: 0, done: 0, failed: 0, released: 0 };
  let unbeaten = { done: 0, failed: 0 };
  let holding = 0;
  const tally = new OutcomeTally();

  const released = await registerWorker(db, { id: workerId, component: worker.component, host: config.host, pid: process.pid, country, stage: worker.stage });
  if (released) log.warn(`Released ${released} rows an earlier process with this worker id (${workerId}) still held`, scope('start'));
  log.info(`Starting ${worker.component} for ${country.toUpperCase()} (worker ${workerId}, chunk size ${options.chunkSize}${options.service ? ', service mode' : ''})`, scope('start'));

  const beat = async () => {
    const batch = unbeaten;
    unbeaten = { done: 0, failed: 0 };
    const outcomes = tally.take();
    try {
      await heartbeat(db, workerId, { ...batch, holding, country, stage: worker.stage, outcomes });
      options.observer?.onHeartbeat();
    } catch (error) {
      unbeaten.done += batch.done;
      unbeaten.failed += batch.failed;
      tally.restore(outcomes);
      log.warn(`Heartbeat failed: ${errorMessage(error)}`, scope('heartbeat'));
    }
  };
  const heartbeatTimer = setInterval(() => void beat(), config.queue.heartbeatSeconds * 1000);

  const notifier = options.service ? new WorkNotifier(options.databaseUrl, `${country}:${worker.stage}`, (m) => log.warn(m, scope('listen'))) : null;
  await notifier?.start();
  options.onReady?.();

  const cursor = new ClaimCursor(db, { country, stage: worker.stage, workerId, storeHost: claimHostFor(worker.stage, config) });
  const policy = { maxAttempts: config.queue.maxAttempts, backoff: config.queue.backoff };

  /** Writes results, retrying through a database outage; gives up only when stopping and the outage persists. */
  async function flush(results: RowResult[]): Promise<void> {
    if (results.length === 0) return;
    const finished = results.flatMap((r) => (r.ok ? [r.row] : []));
    const failures = results.flatMap((r) => (r.ok ? [] : [r.failure]));
    for (let attempt = 1; ; attempt++) {
      try {
        const moved = await finishRows(db, workerId, worker.stage, finished);
        const outcome = await failRows(db, workerId, failures, policy);
        if (moved + outcome.updated < results.length) {
          log.warn(`Lost the lock on ${results.length - moved - outcome.updated} rows (released by the manager?); their results were not written`, scope('flush'));
        }
        totals.done += moved;
        totals.failed += outcome.updated;
        holding = Math.max(0, holding - results.length);
        unbeaten.done += moved;
        unbeaten.failed += outcome.updated;
        options.onProgress?.(totals);
        return;
      } catch (error) {
        if (signal.aborted && attempt > 5) {
          log.error(`Could not write ${results.length} results, giving up as we are stopping: ${errorMessage(error)}; the manager will release the rows`, scope('flush'));
          return;
        }
        log.error(`Could not write ${results.length} results (try ${attempt}): ${errorMessage(error)}`, scope('flush'));
        await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 500 * 2 ** attempt)));
      }
    }
  }

  async function workChunk(rows: ClaimedRow[], claimedAt: number): Promise<void> {
    const started = Date.now();
    const datasourceOf = new Map(rows.map((r) => [r.id, r.datasource_id]));
    const reported = new Set<string>();
    let pending: RowResult[] = [];
    let flushing: Promise<void> = Promise.resolve();
    const report = (result: RowResult) => {
      const id = result.ok ? result.row.id : result.failure.id;
      if (reported.has(id)) return;
      reported.add(id);
      tally.add(datasourceOf.get(id) ?? 0, result.ok ? '' : result.failure.errorClass);
      options.observer?.onResult(worker.stage, result, (performance.now() - claimedAt) / 1000);
      pending.push(result);
      if (pending.length >= FLUSH_EVERY) {
        const batch = pending;
        pending = [];
        flushing = flushing.then(() => flush(batch));
      }
    };
    try {
      await worker.processChunk(rows, { signal, log, report });
    } catch (error) {
      // A stage must report its rows' failures itself; this is a bug or an outage, so the rest is retried later.
      log.error(`Chunk failed: ${errorMessage(error)}`, scope('process_chunk'));
    }
    const batch = pending;
    pending = [];
    await (flushing = flushing.then(() => flush(batch)));
    const unreported = rows.filter((r) => !reported.has(r.id)).map((r) => r.id);
    if (unreported.length) {
      const given = await releaseRows(db, workerId, unreported).catch((error) => {
        log.error(`Could not give back ${unreported.length} rows: ${errorMessage(error)}; the manager will release them`, scope('release'));
        return 0;
      });
      totals.released += given;
      holding = 0;
      log.info(`Gave back ${given} unprocessed rows`, scope('release'));
    }
    log.info(`Chunk done: ${reported.size} of ${rows.length} rows in ${((Date.now() - started) / 1000).toFixed(1)}s`, scope('get_chunk_of_work'));
  }

  try {
    let outageTries = 0;
    while (!signal.aborted) {
      let rows: ClaimedRow[];
      const claimStarted = performance.now();
      try {
        rows = await cursor.next(options.chunkSize);
        options.observer?.onClaim(worker.stage, (performance.now() - claimStarted) / 1000, rows.length);
        outageTries = 0;
      } catch (error) {
        outageTries++;
        log.error(`Cannot claim work: ${errorMessage(error)}; trying again`, scope('get_chunk_of_work'));
        await abortableDelay(Math.min(30_000, 500 * 2 ** outageTries), signal);
        continue;
      }
      if (rows.length === 0) {
        if (!options.service) {
          log.info('No rows gained. No work to do.', scope('get_chunk_of_work'));
          break;
        }
        await notifier!.wait(config.queue.pollSeconds * 1000, signal);
        continue;
      }
      totals.chunks++;
      holding = rows.length;
      log.info(`Doing chunk of work for ${country.toUpperCase()} (size ${rows.length})`, scope('get_chunk_of_work'));
      await workChunk(rows, claimStarted);
    }
  } finally {
    clearInterval(heartbeatTimer);
    await notifier?.close();
    await worker.close?.();
    await beat();
    await markStopped(db, workerId).catch(() => {});
    log.info(`Exiting(time_to_die: ${signal.aborted ? 1 : 0})`, scope('main'));
  }
  return totals;
}
