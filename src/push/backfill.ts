import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import { claimHostFor } from '../daemon/run-daemon.ts';
import { abortableDelay } from '../daemon/signals.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import type { ClaimedRow } from '../queue/claim-chunk.ts';
import { enabledFrontends, frontendsVersion, type Frontend } from './frontend-registry.ts';
import type { LimitFunction } from 'p-limit';
import { prepareRows, pushKey } from './push-plan.ts';
import { isServed, recordPushResults, servedData, servedFilesDigest, servedOrWorkedOn, type PushResult } from './push-records.ts';
import { describeTransfer, pushToFrontends } from './push-to-frontends.ts';
import type { RsyncMovement } from './rsync-movement.ts';
import { findMissingFiles } from './store-files.ts';
import { recordFrontendHealth } from './frontend-health.ts';

/**
 * Backfill: rows the site serves that a frontend lacks (it was added, or
 * re-enabled after rows went live without it) are pushed to that frontend
 * alone. They stay live throughout, since the other frontends have them; until
 * the lag of the new frontend is 0 it would serve broken images, so it joins
 * the load balancer only then (see the README). "Served" includes a live row
 * being reworked (refreshed, re-thumbnailed): the site still shows its
 * live_data, so that version is what a new frontend needs until the new one
 * goes live, which the push stage sends it.
 *
 * Rows are found by their missing (or out-of-date) frontend_pushes record;
 * a failed record waits for its `next_attempt_at` (at once after a fault of
 * the frontend's: see recordPushResults).
 */
export interface BackfillOptions {
  config: LisConfig;
  db: Db;
  log: Logger;
  country: string;
  chunkSize: number;
  limit: LimitFunction;
  signal: AbortSignal;
  /** Its rsyncs running, told to chunks waiting behind them for a turn in push.maxParallel. */
  movement?: RsyncMovement;
}

export interface BackfillTotals {
  /** Per frontend: rows pushed, rows that failed. */
  [frontend: string]: { pushed: number; failed: number };
}

/** A served row to send to one frontend: image_data holds the version served; `own`: its files must be in this host's store. */
export type ServedRow = ClaimedRow & { served_digest: string; own: boolean };

/**
 * Rows of this country served by the site (isServed) that `frontend` can serve neither in the version served nor in
 * the one being worked on, after `afterId`, in id order, with `image_data` the version served. Rows of this host's
 * store, and rows of no host (store_host '': a `lis refresh` cleared it, and the row is waiting for its download, or
 * went straight back to live on a 304, its files still where they were made): those whose files are here are sent.
 */
export async function servedRowsLacking(db: Db, frontend: string, country: string, storeHost: string, afterId: string, limit: number): Promise<ServedRow[]> {
  const { rows } = await sql<ServedRow>`
    SELECT li.id, li.country, li.image_url, li.image_hash, li.datasource_id, ${servedData('li')} AS image_data, li.human_classified,
           li.image_class, li.attempts, li.store_host, ${servedFilesDigest('li')} AS served_digest,
           (li.store_host = ${storeHost} AND li.stage = 'live' AND li.state = 'done') AS own
      FROM live_images li
     WHERE li.country = ${country} AND li.store_host IN (${storeHost}, '') AND ${isServed('li')}
       AND li.id > ${afterId}::bigint
       AND NOT EXISTS (SELECT 1 FROM frontend_pushes fp
                        WHERE fp.frontend = ${frontend} AND fp.country = li.country AND fp.image_hash = li.image_hash
                          AND ((fp.pushed_at IS NOT NULL AND ${servedOrWorkedOn('fp', 'li')})
                               OR fp.next_attempt_at > now()))
     ORDER BY li.id
     LIMIT ${limit}`.execute(db);
  return rows;
}

/** One pass: for each enabled frontend (at once), chunk after chunk until it lacks nothing or fails. */
export async function backfillPass(options: BackfillOptions): Promise<BackfillTotals> {
  const frontends = await enabledFrontends(options.db);
  const totals: BackfillTotals = {};
  await Promise.all(frontends.map(async (f) => (totals[f.name] = await backfillFrontend(f, options))));
  return totals;
}

async function backfillFrontend(frontend: Frontend, options: BackfillOptions): Promise<{ pushed: number; failed: number }> {
  const { config, db, log, country } = options;
  const scope = { scope: 'Push::backfill' };
  const storeHost = claimHostFor('push', config);
  const totals = { pushed: 0, failed: 0 };
  let afterId = '0';
  while (!options.signal.aborted) {
    const claimed = await servedRowsLacking(db, frontend.name, country, storeHost, afterId, options.chunkSize);
    if (claimed.length === 0) break;
    afterId = claimed[claimed.length - 1].id;
    const byId = new Map(claimed.map((r) => [r.id, r]));
    const { rows: prepared, rejected } = prepareRows(claimed, country);
    const missing = await findMissingFiles(config.stores.thumbnails, prepared);
    const rows = prepared.filter((r) => !missing.has(r.id));
    const results: PushResult[] = [
      ...rejected.map((r) => ({ frontend: frontend.name, rowId: r.ok ? r.row.id : r.failure.id, error: r.ok ? null : r.failure.reason })),
      // Files not here are a fault of the row's only for a live row of this host; a row of no host has them on
      // another host, and a reworked row's old files may be on the host it was made on (its new version is pushed soon).
      ...[...missing]
        .filter(([rowId]) => byId.get(rowId)!.own)
        .map(([rowId, file]) => ({ frontend: frontend.name, rowId, error: `thumbnail missing from the store: ${file}` })),
    ];
    let failedTransfer = false;
    if (rows.length) {
      const { outcomes, transfers } = await pushToFrontends(new Map([[frontend.name, rows]]), [frontend], {
        config: config.push,
        storeRoot: config.stores.thumbnails,
        limit: options.limit,
        db,
        movement: options.movement,
      });
      for (const row of rows) {
        const outcome = outcomes.get(pushKey(frontend.name, row.id))!;
        results.push(
          outcome.ok
            ? { frontend: frontend.name, rowId: row.id, error: null, digest: byId.get(row.id)!.served_digest }
            : { frontend: frontend.name, rowId: row.id, error: outcome.message, errorClass: outcome.errorClass },
        );
      }
      const t = transfers[0];
      // Backfill may be all the traffic a frontend gets (a new or re-enabled one, a quiet country): its
      // failures must mark it down for the manager's alert, and its successes clear that, as chunks do.
      await recordFrontendHealth(db, transfers, config.host).catch((error: Error) => log.warn(`Cannot record frontend health: ${error.message}`, scope));
      failedTransfer = !t.outcome.ok && t.outcome.errorClass !== 'files_vanished';
      if (failedTransfer) log.warn(`Backfill ${describeTransfer(t)}; trying again later`, scope);
      else log.info(`Backfill ${describeTransfer(t)}`, scope);
    }
    if (results.length) await recordPushResults(db, results, config.queue.backoff);
    totals.pushed += results.filter((r) => r.error === null).length;
    totals.failed += results.filter((r) => r.error !== null).length;
    // A frontend that failed is still down: the rest of its backlog waits for the next pass.
    if (failedTransfer) break;
  }
  return totals;
}

/**
 * Runs backfill beside the chunk loop. By hand: one pass, which the daemon
 * waits for before it exits. Service mode: a pass at start, then again when
 * the frontends change (added, enabled; looked at every `queue.pollSeconds`)
 * or every `push.backfillCheckSeconds` in any case (a frontend whose pushes
 * failed is retried by then: its records' backoff has passed).
 */
export class BackfillLoop {
  private readonly stopper = new AbortController();
  private running: Promise<void> | null = null;

  constructor(private readonly options: Omit<BackfillOptions, 'signal'> & { service: boolean; signal: AbortSignal }) {
    // A stop that came before (SIGTERM while rsync's version was checked) has fired its 'abort' already, never again.
    if (options.signal.aborted) this.stopper.abort();
    else options.signal.addEventListener('abort', () => this.stopper.abort(), { once: true });
  }

  start(): this {
    this.running = this.loop().catch((error) => {
      this.options.log.error(`Backfill stopped: ${errorMessage(error)}`, { scope: 'Push::backfill' });
    });
    return this;
  }

  /** Service mode: stop after the transfer in hand. By hand: wait for the pass to end. */
  async stop(): Promise<void> {
    if (this.options.service) this.stopper.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const { db, config, log } = this.options;
    const signal = this.stopper.signal;
    let lastVersion = '';
    let lastPass = 0;
    while (!signal.aborted) {
      const version = await frontendsVersion(db).catch(() => lastVersion);
      if (version !== lastVersion || Date.now() - lastPass >= config.push.backfillCheckSeconds * 1000) {
        lastVersion = version;
        lastPass = Date.now();
        try {
          const totals = await backfillPass({ ...this.options, signal });
          const moved = Object.entries(totals).filter(([, t]) => t.pushed || t.failed);
          if (moved.length)
            log.info(`Backfill pass: ${moved.map(([f, t]) => `${f} +${t.pushed}${t.failed ? ` (${t.failed} failed)` : ''}`).join(', ')}`, {
              scope: 'Push::backfill',
            });
        } catch (error) {
          log.error(`Backfill pass failed: ${errorMessage(error)}; trying again later`, { scope: 'Push::backfill' });
        }
      }
      if (!this.options.service) return;
      await abortableDelay(config.queue.pollSeconds * 1000, signal);
    }
  }
}
