import path from 'node:path';
import type { LisConfig } from '../config/config-schema.ts';
import { checkReadable } from '../daemon/store-check.ts';
import type { ChunkContext, StageWorker } from '../daemon/run-daemon.ts';
import type { Db } from '../db/connect.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { enabledFrontends } from './frontend-registry.ts';
import type { LimitFunction } from 'p-limit';
import { decideRowResults, planPush, prepareRows, type FrontendRowOutcome } from './push-plan.ts';
import { loadCurrentPushes, recordPushResults, type PushResult } from './push-records.ts';
import { describeTransfer, pushToFrontends } from './push-to-frontends.ts';
import { findMissingFiles } from './store-files.ts';
import { recordFrontendHealth } from './frontend-health.ts';
import type { RsyncMovement } from './rsync-movement.ts';

export interface PushWorkerOptions {
  config: LisConfig;
  db: Db;
  country: string;
  limit: LimitFunction;
  /** The pusher's rsyncs running (chunks and backfill): a chunk's push in progress counts as progress. */
  movement?: RsyncMovement;
  /** Called by close(): the backfill loop that runs beside the chunk loop. */
  onClose?: () => Promise<void>;
}

/**
 * lis_pusherd's stage: a chunk of rows in stage `push` goes, with one rsync
 * per enabled frontend, to every frontend that lacks it; rows every enabled
 * frontend now has go live, the rest wait (see decideRowResults).
 */
export class PushWorker implements StageWorker {
  readonly component = 'pusherd';
  readonly scope = 'Push';
  readonly stage = 'push' as const;
  /** push.chunksAtOnce: the next chunk's rsyncs run while the last one's finish and its results are written. */
  readonly chunksAtOnce: number;
  /** The thumbnail store: with no folder for the country (not mounted), the stage pauses (see processChunk). */
  readonly readStores: string[];

  constructor(private readonly options: PushWorkerOptions) {
    this.chunksAtOnce = options.config.push.chunksAtOnce;
    this.readStores = [options.config.stores.thumbnails];
  }

  async processChunk(claimed: ClaimedRow[], ctx: ChunkContext): Promise<void> {
    const { config, db, country } = this.options;
    const scope = { scope: 'Push::process_chunk' };
    const frontends = await enabledFrontends(db);
    if (frontends.length === 0) {
      // Making rows live with no frontend at all would publish nothing; they wait for `lis frontend add`.
      ctx.log.warn('No enabled frontend (lis frontend add NAME TARGET): the chunk waits', scope);
      for (const row of claimed) {
        ctx.report({
          ok: false,
          failure: { id: row.id, attempts: row.attempts, errorClass: 'no_frontends', reason: 'no enabled frontend to push to', retryable: true },
        });
      }
      return;
    }

    const { rows: prepared, rejected } = prepareRows(claimed, country);
    for (const r of rejected) ctx.report(r);
    const missing = await findMissingFiles(config.stores.thumbnails, prepared);
    // Files missing because the whole store is away (no folder for the country: not mounted) are not lost:
    // a store fault that pauses the stage, instead of sending every row back to be thumbnailed again.
    const storeAway = missing.size ? await checkReadable(path.join(config.stores.thumbnails, country)) : null;
    for (const row of prepared) {
      const file = missing.get(row.id);
      if (file !== undefined)
        ctx.report({
          ok: false,
          failure: {
            id: row.id,
            attempts: row.attempts,
            errorClass: storeAway ? 'store_paused' : 'thumbnail_missing',
            reason: storeAway ? `the thumbnail store is not usable: ${storeAway}` : `thumbnail missing from the store: ${file}`,
            retryable: true,
          },
        });
    }
    const rows = prepared.filter((r) => !missing.has(r.id));
    // Nothing is sent yet: stopping now gives the rest back untouched.
    if (ctx.signal.aborted || rows.length === 0) return;

    const names = frontends.map((f) => f.name);
    const have = await loadCurrentPushes(
      db,
      rows.map((r) => r.id),
      names,
    );
    const plan = planPush(rows, names, have);
    const { outcomes, transfers } = await pushToFrontends(plan, frontends, {
      config: config.push,
      storeRoot: config.stores.thumbnails,
      limit: this.options.limit,
      db,
      movement: this.options.movement,
      // Its rsyncs running is progress: a chunk longer than queue.progressTimeoutSeconds is not given back as wedged.
      onProgress: ctx.progress,
    });
    for (const t of transfers) {
      // A transfer that needed a second rsync is told at info: it is rare, and otherwise shows only as a second connection.
      if (t.outcome.ok && t.lostRace !== undefined) ctx.log.info(describeTransfer(t), scope);
      else if (t.outcome.ok) ctx.log.debug(describeTransfer(t), scope);
      else ctx.log.warn(`${describeTransfer(t)}; its rows stay not live until it catches up (no row is charged)`, scope);
    }
    await recordFrontendHealth(db, transfers, config.host).catch((error: Error) => ctx.log.warn(`Cannot record frontend health: ${error.message}`, scope));

    await recordPushResults(db, pushResultsOf(outcomes), config.queue.backoff);
    // A frontend disabled or removed while its rsync ran (typically the one that hangs, which is why it was
    // disabled) must not hold the chunk back: `lis frontend disable` promises its rows go live at once, and
    // its wake-up ran before these rows were given back. Judged by those still enabled; were none left,
    // by those of the start (rows never go live with nobody serving them).
    const stillEnabled = new Set((await enabledFrontends(db)).map((f) => f.name));
    const judgedBy = names.some((n) => stillEnabled.has(n)) ? names.filter((n) => stillEnabled.has(n)) : names;
    for (const name of names.filter((n) => !judgedBy.includes(n)))
      ctx.log.info(`${name} was disabled or removed during the push: the chunk's rows no longer wait for it`, scope);
    for (const result of decideRowResults(rows, judgedBy, outcomes, { maxAttempts: config.queue.maxAttempts })) ctx.report(result);
  }

  async close(): Promise<void> {
    await this.options.onClose?.();
  }
}

/** What frontend_pushes learns from a chunk: each (frontend, row) pushed, or why not. */
export function pushResultsOf(outcomes: Map<string, FrontendRowOutcome>): PushResult[] {
  return [...outcomes].map(([key, outcome]) => {
    const [frontend, rowId] = key.split('\t');
    return outcome.ok ? { frontend, rowId, error: null } : { frontend, rowId, error: outcome.message, errorClass: outcome.errorClass };
  });
}
