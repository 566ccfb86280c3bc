import path from 'node:path';
import { setMaxListeners } from 'node:events';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { serviceQueryBounds } from '../db/query-bounds.ts';
import { LisError, errorMessage, stackOf } from '../errors.ts';
import { ownedByStageErrorRate } from '../failure/failure-reasons.ts';
import type { Logger } from '../log/create-logger.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { rowsPastStageOnHost } from '../queue/queue-figures.ts';
import { ClaimCursor } from '../queue/claim-cursor.ts';
import { releaseHeldExcept, releaseRows } from '../queue/release-rows.ts';
import type { WorkStage } from '../queue/stages.ts';
import { WorkNotifier } from '../queue/work-notifier.ts';
import { abortableDelay } from '../util/abortable-delay.ts';
import { backoffDelayMs } from '../util/retry-with-backoff.ts';
import { settledWithin } from '../util/settled-within.ts';
import { afterEmptyClaim } from './empty-claim.ts';
import { ChunkRun, isStoreFault, thrownChunkResults, type ResultKind, type RowResult } from './chunk-run.ts';
import { HeartbeatLoop } from './heartbeat-loop.ts';
import { OutcomeTally } from './outcome-tally.ts';
import { sayNoRowsGained } from './no-rows-gained.ts';
import { outageLine } from './outage-line.ts';
import { registerAtStart } from './register-at-start.ts';
import { rethrowIfPermanent, writeResults } from './result-writer.ts';
import type { StoreHealth } from './store-check.ts';
import { StoreGuard } from './store-guard.ts';
import { storeIdentities } from './store-identity.ts';
import { StopWait, stopDatabaseWaitMs } from './stop-wait.ts';
import { StrayRows, straysGivenBackLine } from './stray-rows.ts';
import { heartbeat, markStopped, registerWorker, setPaused, workerIdFor } from './worker-registry.ts';

export type { RowResult } from './chunk-run.ts';

export interface ChunkContext {
  /** Aborted on SIGTERM/SIGINT, or when this chunk is dropped: finish the rows in hand, start no new one. */
  signal: AbortSignal;
  log: Logger;
  /** Call once per row as soon as it is done; rows never reported are given back. */
  report(result: RowResult): void;
  /**
   * Call while the chunk moves though no row is done yet (a push's rsyncs running): counts as progress, so a chunk
   * longer than queue.progressTimeoutSeconds is not given back as wedged while it moves.
   */
  progress?: () => void;
}

/** What a daemon brings to the runner: its stage and how it works a chunk. */
export interface StageWorker {
  /** `downloadd`: log file names and the workers table. */
  component: string;
  /** `Download`: the first part of log scopes such as `Download::get_chunk_of_work`. */
  scope: string;
  stage: WorkStage;
  processChunk(rows: ClaimedRow[], ctx: ChunkContext): Promise<void>;
  close?(): Promise<void> | void;
  /** Folders the stage writes: while one is full or unwritable, no chunk is claimed. */
  stores?: string[];
  /**
   * Stores the stage reads files from (each country has its folder below): when the stage reports one
   * missing (`store_paused`), no chunk is claimed until the country's folder is back.
   */
  readStores?: string[];
  /**
   * True when processChunk may run for several chunks at once: the runner
   * then claims the next chunk while a few slow rows of the last are still in
   * flight, so one slow URL never idles the other slots.
   */
  overlapChunks?: boolean;
  /**
   * Whole chunks worked at once (default 1): lis_pusherd sends one chunk while
   * the last one's rsyncs finish and its results are written.
   */
  chunksAtOnce?: number;
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
  /** Several workers in one process (tests, benchmarks) need ids of their own; default `host:pid:random`. */
  workerId?: string;
  observer?: RunObserver;
  /** Called after each write, for progress lines and tests. */
  onProgress?: (totals: RunTotals) => void;
  /** Called once the worker is registered and listening: the daemon's readiness signal. */
  onReady?: () => void;
  /**
   * How many of the pool's connections were lost so far (a server restarted, a database restored or failed over
   * under us): after a loss, the rows the database says this worker holds may not be those in hand.
   */
  connectionsLost?: () => number;
}

/** Hooks for metrics: what the runner saw, as it happens. */
export interface RunObserver {
  onClaim(stage: WorkStage, seconds: number, rows: number): void;
  /** `kind` says whose fault a failure is: `ours` rows were given back uncharged. */
  onResult(stage: WorkStage, result: RowResult, secondsSinceClaim: number, kind?: ResultKind): void;
  onHeartbeat(): void;
  onStoreHealth?(health: StoreHealth): void;
  onPaused?(paused: boolean): void;
}

export interface RunTotals {
  chunks: number;
  done: number;
  failed: number;
  released: number;
  /** Rows given back uncharged because of our own fault. */
  deferred: number;
}

/** Results are written in batches of this many, and at least every second. */
const FLUSH_EVERY = 100;
const FLUSH_MS = 1000;
/**
 * With overlapping chunks: at most this many in flight, and a new claim only while the rows still
 * unreported are at most this share of a chunk. Stragglers live as long as the download timeout, so a
 * backlog with one slow URL per chunk keeps about rate x timeout / chunk size chunks in flight (40 at
 * 1,000 rows/s, 20 s and 500 rows): 16 stalled the claim loop until the first straggler ended.
 */
const MAX_CHUNKS_IN_FLIGHT = 128;
const STRAGGLER_SHARE = 0.25;

/** Rows of a stage this host may claim: downloads anywhere; later stages only where the files are. */
export function claimHostFor(stage: WorkStage, config: LisConfig): string {
  return stage === 'download' || config.stores.shared ? '' : config.host;
}

/** Pure: may the runner claim another chunk now? */
export function roomForChunk(inFlight: Array<{ unreported: number }>, overlap: boolean, chunkSize: number, chunksAtOnce = 1): boolean {
  if (inFlight.length < chunksAtOnce) return true;
  if (!overlap || inFlight.length >= MAX_CHUNKS_IN_FLIGHT) return false;
  return inFlight.reduce((n, c) => n + c.unreported, 0) <= Math.max(1, Math.floor(chunkSize * STRAGGLER_SHARE));
}

/**
 * The chunk loop every daemon shares: register, claim a chunk, let the stage
 * work it, write results as they come, repeat; give back what was not done
 * when told to stop. Our own faults never cost a row: they are given back,
 * and a store that cannot be written pauses claiming. Database outages are
 * waited out (until SIGTERM); errors no retry can fix stop the daemon.
 */
export async function runDaemon(worker: StageWorker, options: RunOptions): Promise<RunTotals> {
  const { config, db, log, country } = options;
  const workerId = options.workerId ?? workerIdFor(config.host, process.pid);
  const scope = (fn: string) => ({ scope: `${worker.scope}::${fn}` });
  const totals: RunTotals = { chunks: 0, done: 0, failed: 0, released: 0, deferred: 0 };
  const fatalStop = new AbortController();
  const signal = AbortSignal.any([options.signal, fatalStop.signal]);
  // Every chunk in flight listens to it (AbortSignal.any): not a leak, so no warning for up to the cap.
  setMaxListeners(MAX_CHUNKS_IN_FLIGHT + 16, signal);
  const stopWait = new StopWait(signal, stopDatabaseWaitMs(config));
  // Set by failWith, from callbacks: declared so that TypeScript does not narrow it to null for the whole body.
  let fatal = null as Error | null;
  const failWith = (error: unknown) => {
    fatal ??= error instanceof Error ? error : new Error(String(error));
    fatalStop.abort(fatal);
  };
  let unbeaten = { done: 0, failed: 0, ours: 0 };
  let progressed = false;
  const tally = new OutcomeTally();
  const chunks = new Set<ChunkRun>();
  /** Chunks out of `chunks` whose unfinished rows are being given back: still ours until that is answered. */
  const ending = new Set<ChunkRun>();
  const identity = {
    id: workerId,
    component: worker.component,
    host: config.host,
    pid: process.pid,
    country,
    stage: worker.stage,
    stores: await storeIdentities(config),
  };
  let wake: (() => void) | null = null;
  const changed = () => wake?.();
  // Rows this worker may hold that no chunk in hand does (stray-rows.ts): given back before the next claim.
  const strays = new StrayRows(options.connectionsLost);

  const released = await registerAtStart(db, identity, {
    service: options.service,
    signal: options.signal,
    warn: (m) => log.warn(m, scope('start')),
    liveSeconds: config.manager.staleWorkerSeconds,
  });
  // Registering is the first heartbeat (it sets heartbeat_at): /metrics says so, rather than 0 (1970) until the next beat.
  options.observer?.onHeartbeat();
  if (released) log.warn(`Released ${released} rows an earlier process with this worker id (${workerId}) still held`, scope('start'));
  log.info(
    `Starting ${worker.component} for ${country.toUpperCase()} (worker ${workerId}, chunk size ${options.chunkSize}${options.service ? ', service mode' : ''})`,
    scope('start'),
  );

  const guard = new StoreGuard({
    dirs: worker.stores ?? [],
    readDirs: (worker.readStores ?? []).map((store) => path.join(store, country)),
    expectsFiles: () => rowsPastStageOnHost(db, config.stores.shared ? '' : config.host, worker.stage),
    limits: { minFreeBytes: config.stores.minFreeBytes, minFreePercent: config.stores.minFreePercent },
    checkEverySeconds: config.stores.checkSeconds,
    retryMaxSeconds: config.stores.retryMaxSeconds,
    log,
    scope: `${worker.scope}::store`,
    onHealth: (h) => options.observer?.onStoreHealth?.(h),
    onPause: async (reason) => {
      options.observer?.onPaused?.(reason !== null);
      await setPaused(db, workerId, reason);
    },
  });
  const writerOptions = {
    db,
    workerId: () => workerId,
    stage: worker.stage,
    log,
    scope: `${worker.scope}::flush`,
    signal: options.signal,
    policy: { maxAttempts: config.queue.maxAttempts, backoff: config.queue.backoff },
    onWritten: (o: { done: number; failed: number; deferred: number }) => {
      totals.done += o.done;
      totals.failed += o.failed;
      totals.deferred += o.deferred;
      unbeaten.done += o.done;
      unbeaten.failed += o.failed;
      options.onProgress?.(totals);
    },
  };
  const flushChunk = (chunk: ChunkRun) =>
    (chunk.flushing = chunk.flushing
      .then(async () => {
        if ((await stopWait.answered(writeResults(chunk, writerOptions))) === 'stopped') {
          strays.strayed(0);
          log.error('Database not answering (writing results) as we stop: leaving them; the manager will release the rows', scope('flush'));
        }
      })
      .catch(failWith));
  const dropChunk = (chunk: ChunkRun) => {
    chunk.drop();
    chunks.delete(chunk);
    changed();
  };

  const beatOnce = async () => {
    const batch = unbeaten;
    unbeaten = { done: 0, failed: 0, ours: 0 };
    const outcomes = tally.take();
    const holding = [...chunks].reduce((n, c) => n + c.unreported + c.pendingResults, 0);
    const moved = progressed || holding === 0;
    progressed = false;
    try {
      const alive = await heartbeat(db, workerId, { ...batch, holding, progressed: moved, country, stage: worker.stage, outcomes });
      options.observer?.onHeartbeat();
      // Once the run is over (heartbeats.stopping), a worker marked stopped, by the manager or by our own exit, stays stopped.
      if (!alive && !options.signal.aborted && !heartbeats.stopping) {
        // The manager found us silent or wedged and gave our rows to others: never carry on as if nothing happened.
        log.error(
          `The manager marked this worker stopped and released its rows (no heartbeat or no progress for too long): dropping ${chunks.size} chunks in hand, registering again`,
          scope('heartbeat'),
        );
        for (const chunk of [...chunks]) dropChunk(chunk);
        await registerWorker(db, identity);
      }
    } catch (error) {
      unbeaten.done += batch.done;
      unbeaten.failed += batch.failed;
      unbeaten.ours += batch.ours;
      tally.restore(outcomes);
      progressed ||= moved;
      log.warn(outageLine('heartbeat', 'Heartbeat failed', error), scope('heartbeat'));
    }
    await giveBackWedged();
  };

  /** A chunk with no result for queue.progressTimeoutSeconds is given back, so its rows do not wait for ever. */
  const giveBackWedged = async () => {
    for (const chunk of [...chunks]) {
      const idleSeconds = (performance.now() - chunk.lastProgressAt) / 1000;
      if (chunk.dropped || chunk.unreported === 0 || idleSeconds < config.queue.progressTimeoutSeconds) continue;
      await flushChunk(chunk);
      const ids = chunk.unreportedIds();
      ending.add(chunk);
      dropChunk(chunk);
      log.error(
        `No progress on a chunk for ${Math.round(idleSeconds)}s (queue.progressTimeoutSeconds): giving back its ${ids.length} unfinished rows`,
        scope('progress'),
      );
      totals.released += await releaseRows(db, workerId, ids)
        .catch((error: unknown) => {
          strays.strayed(ids.length);
          log.error(`${outageLine('giving back rows', `Could not give back ${ids.length} rows`, error)}; giving them back later`, scope('progress'));
          return 0;
        })
        .finally(() => {
          ending.delete(chunk);
          changed();
        });
    }
  };
  const heartbeats = new HeartbeatLoop(config.queue.heartbeatSeconds * 1000, beatOnce, (m) => log.warn(m, scope('heartbeat'))).start();
  const flushTimer = setInterval(() => {
    for (const chunk of chunks) if (chunk.pendingResults > 0) void flushChunk(chunk);
  }, FLUSH_MS);

  const notifier = options.service
    ? new WorkNotifier(
        options.databaseUrl,
        `${country}:${worker.stage}`,
        { warn: (m) => log.warn(m, scope('listen')), info: (m) => log.info(m, scope('listen')) },
        // Checked as often as the worker beats: a silent path costs at most that plus a query bound in wake-ups.
        { bounds: serviceQueryBounds(config), checkEveryMs: config.queue.heartbeatSeconds * 1000 },
      )
    : null;
  await notifier?.start();
  options.onReady?.();

  const claimScope = { workerId, country, stage: worker.stage, storeHost: claimHostFor(worker.stage, config) };
  const cursor = new ClaimCursor(db, claimScope);
  const oursDelay = config.queue.oursRetrySeconds;

  async function workChunk(chunk: ChunkRun): Promise<void> {
    const started = Date.now();
    const report = (result: RowResult) => {
      const kind = chunk.add(result, oursDelay);
      if (kind === null) return;
      progressed = true;
      if (kind === 'ours' && !result.ok) {
        if (isStoreFault(result.failure.errorClass)) {
          // Our store, not the row: pause before the next claim, and start no more rows of this chunk.
          guard.flag();
          chunk.stopStarting();
        }
        // No other alert tells of a bug or a lost file: the stage's error rate counts them.
        if (ownedByStageErrorRate(result.failure.errorClass)) unbeaten.ours++;
      }
      // Every outcome, ours included (the datasource's "ours" figure); bad_datasources counts only the source's.
      tally.add(chunk.datasourceOf.get(result.ok ? result.row.id : result.failure.id) ?? 0, result.ok ? '' : result.failure.errorClass);
      options.observer?.onResult(worker.stage, result, (performance.now() - chunk.claimedAt) / 1000, kind);
      if (chunk.pendingResults >= FLUSH_EVERY) void flushChunk(chunk);
      changed();
    };
    try {
      const progress = () => {
        if (chunk.dropped) return;
        chunk.lastProgressAt = performance.now();
        progressed = true;
      };
      await worker.processChunk(chunk.rows, { signal: chunk.signal, log, report, progress });
    } catch (error) {
      const ours = thrownChunkResults(chunk.unreportedRows(), error, chunk.signal.aborted);
      const [first] = ours;
      const road = first && !first.ok ? `; its ${ours.length} unreported rows wait queue.oursRetrySeconds, uncharged (${first.failure.errorClass})` : '';
      // A bug's stack goes with it; an outage's (a driver's) says nothing an operator can use.
      const bug = first && !first.ok && first.failure.errorClass === 'internal' ? stackOf(error) : {};
      log.error(`Chunk failed: ${errorMessage(error)}${road}`, { ...scope('process_chunk'), ...bug });
      // Each row as its own result of ours, written with the chunk's results; the stage error rate counts rows, and
      // these rows were not worked: one chunk thrown counts as its rows' worth, as the same bug met row by row would.
      for (const result of ours) report(result);
    }
    if (chunk.dropped) return;
    await flushChunk(chunk);
    const unreported = chunk.unreportedIds();
    ending.add(chunk);
    chunks.delete(chunk);
    changed();
    if (unreported.length && !chunk.dropped) {
      const given = await stopWait
        .answered(releaseRows(db, workerId, unreported))
        .then((n) => (n === 'stopped' ? Promise.reject(new LisError('ERR_DATABASE_TIMEOUT', 'no answer as we stop')) : n))
        .catch((error: unknown) => {
          strays.strayed(unreported.length);
          log.error(`${outageLine('giving back rows', `Could not give back ${unreported.length} rows`, error)}; giving them back later`, scope('release'));
          return 0;
        });
      totals.released += given;
      log.info(`Gave back ${given} unprocessed rows`, scope('release'));
    }
    ending.delete(chunk);
    changed();
    log.info(`Chunk done: ${chunk.reported.size} of ${chunk.rows.length} rows in ${((Date.now() - started) / 1000).toFixed(1)}s`, scope('get_chunk_of_work'));
  }

  /** Resolves when a chunk reports or ends, after `ms`, or at a stop. */
  const nextChange = (ms: number) => {
    const timer = new AbortController();
    wake = () => timer.abort();
    return abortableDelay(ms, AbortSignal.any([signal, timer.signal])).finally(() => (wake = null));
  };

  /** At the end: a last try at the rows this worker may hold that no chunk does (strays). */
  const giveBackStrays = async () => {
    // Not when a call went unanswered as we stop (the database hangs), and bounded as the stop mark is: the exit
    // keeps within its grace.
    if (stopWait.unanswered) return;
    let timer: NodeJS.Timeout | undefined;
    const freed = await Promise.race([
      releaseHeldExcept(db, claimScope, []).catch((error: unknown) => outageLine('giving back rows', 'Could not give back rows', error)),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('Database not answering (giving back rows)'), 2000))),
    ]);
    clearTimeout(timer);
    if (typeof freed !== 'number') {
      log.error(`${freed}: the rows this worker may still hold are left to the manager, which releases them once it is stopped`, scope('release'));
      return;
    }
    strays.clear();
    totals.released += freed;
    if (freed > 0) log.warn(`Gave back ${freed} rows the database had not taken back before: no attempt charged`, scope('release'));
  };

  /** The rows of the chunks in hand, and of those still giving theirs back: the rows this worker knows it holds. */
  const heldIds = () => [...chunks, ...ending].flatMap((chunk) => chunk.rows.map((row) => row.id));

  const running = new Set<Promise<void>>();
  try {
    let outageTries = 0;
    while (!signal.aborted) {
      if (!roomForChunk([...chunks], Boolean(worker.overlapChunks), options.chunkSize, worker.chunksAtOnce)) {
        await nextChange(config.queue.pollSeconds * 1000);
        continue;
      }
      await guard.waitWritable(signal);
      if (signal.aborted) break;
      let rows: ClaimedRow[];
      const claimStarted = performance.now();
      // Rows these may give back while the claim runs are not in what it reads (afterEmptyClaim).
      const heldAtClaim = chunks.size > 0 || ending.size > 0;
      // A notification while the claim runs is for rows it may not see: the wait after an empty claim ends at once then.
      const wokenAtClaim = notifier?.mark() ?? 0;
      try {
        // Part of claiming: its failure is logged and waited out as the claim's.
        strays.lookForLostConnections();
        // A claim failed for a database fault may have been committed, its answer lost on the way back.
        if (strays.mayHold) {
          const since = strays.mark();
          const freed = await stopWait.answered(releaseHeldExcept(db, claimScope, heldIds()));
          if (freed === 'stopped') {
            log.error(
              'Database not answering (claiming work: giving back a lost claim) as we stop: leaving it; the manager will release the rows',
              scope('get_chunk_of_work'),
            );
            break;
          }
          const why = strays.givenBack(since);
          if (freed > 0) {
            totals.released += freed;
            log.warn(straysGivenBackLine(freed, why), scope('get_chunk_of_work'));
          }
        }
        const claimed = await stopWait.answered(cursor.next(options.chunkSize));
        if (claimed === 'stopped') {
          // A row the claim may still take is held as we stop: our stop mark says so (strays), and stuck_jobs releases it.
          log.error('Database not answering (claiming work) as we stop: leaving the claim', scope('get_chunk_of_work'));
          strays.strayed(0);
          break;
        }
        rows = claimed;
        options.observer?.onClaim(worker.stage, (performance.now() - claimStarted) / 1000, rows.length);
        // The operator who read "Cannot claim work" in the error log needs to read that it is over, too.
        if (outageTries > 0) log.info(`Database reachable again after ${outageTries} failed claims: carrying on`, scope('get_chunk_of_work'));
        outageTries = 0;
      } catch (error) {
        rethrowIfPermanent('Cannot claim work', error);
        outageTries++;
        strays.strayed(0);
        log.error(`${outageLine('claiming work', 'Cannot claim work', error)}; trying again`, scope('get_chunk_of_work'));
        await abortableDelay(backoffDelayMs(outageTries), signal);
        continue;
      }
      if (rows.length === 0) {
        const next = afterEmptyClaim(heldAtClaim, chunks.size > 0 || ending.size > 0, options.service);
        if (next === 'wait for chunks') await nextChange(config.queue.pollSeconds * 1000);
        else if (next === 'end') {
          await sayNoRowsGained(db, claimScope, { stopWait, log, scope: scope('get_chunk_of_work'), staleWorkerSeconds: config.manager.staleWorkerSeconds });
          break;
        } else if (next === 'wait for work') await notifier!.wait(config.queue.pollSeconds * 1000, signal, wokenAtClaim);
        continue;
      }
      totals.chunks++;
      log.info(`Doing chunk of work for ${country.toUpperCase()} (size ${rows.length})`, scope('get_chunk_of_work'));
      const chunk = new ChunkRun(rows, claimStarted, signal);
      chunks.add(chunk);
      const work = workChunk(chunk).catch(failWith);
      running.add(work);
      void work.finally(() => running.delete(work));
    }
    await Promise.all([...running]);
    if (fatal) throw fatal;
  } catch (error) {
    failWith(error);
    await Promise.all([...running]);
  } finally {
    // No more timed beats from here (the run is over); the one under way is waited for below.
    const beatsStopped = heartbeats.stop(2000);
    clearInterval(flushTimer);
    // Each of these may meet a database that is gone: none may hold up the exit for long.
    if (notifier) await settledWithin(notifier.close(), 2000);
    await worker.close?.();
    // The timer's beat may still be under way: wait for it, then the last beat with the last figures, then the
    // mark. A beat landing after the mark would read our own stop as the manager's and register us again: a
    // worker row "running" with no process behind it, which the manager would later report as dead.
    await beatsStopped;
    await settledWithin(heartbeats.beat(), 2000);
    // A connection lost since the last claim (a restore just before the stop) counts too: our stop mark says we hold
    // nothing, so the manager would never release such rows.
    if (strays.mayHold || strays.connectionLostSinceLastLook) await giveBackStrays();
    // Rows still held then are left to the manager (stuck_jobs releases what a stopped worker says it holds).
    await settledWithin(markStopped(db, workerId, strays.forStopMark), 2000);
    log.info(`Exiting(time_to_die: ${options.signal.aborted ? 1 : 0})`, scope('main'));
  }
  if (fatal) throw fatal;
  return totals;
}
