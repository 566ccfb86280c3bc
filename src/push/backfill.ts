import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import { claimHostFor } from '../daemon/run-daemon.ts';
import { abortableDelay } from '../daemon/signals.ts';
import type { Db } from '../db/connect.ts';
import { serviceQueryBounds } from '../db/query-bounds.ts';
import { errorMessage, LisError } from '../errors.ts';
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
import {
  claimedElsewhere,
  claimRows,
  claimsElsewhere,
  clearEndedClaims,
  livePassesCte,
  releaseClaims,
  withClaimToken,
  type ClaimToken,
} from './backfill-claims.ts';

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
 *
 * Each host sends the rows whose files it holds. With `stores.shared` that is
 * every row for every host, so the hosts split the work: each chunk is claimed
 * first, and rows another host's live pass has claimed are left to it
 * (backfill-claims.ts). The loop below watches such rows until they are
 * sent, so that the rows of a host that died mid-chunk are sent by another.
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

/** One frontend's pass: rows pushed, rows that failed; with shared stores, the rows it lacks that other hosts' passes hold. */
export interface FrontendTotals {
  pushed: number;
  failed: number;
  elsewhere: Array<{ name: string; rows: number }>;
}

export interface BackfillTotals {
  [frontend: string]: FrontendTotals;
}

/** A served row to send to one frontend: image_data holds the version served; `own`: its files must be in this host's store. */
export type ServedRow = ClaimedRow & { served_digest: string; own: boolean };

/**
 * Rows of this country served by the site (isServed) that `frontend` can serve neither in the version served nor in
 * the one being worked on, after `afterId`, in id order, with `image_data` the version served. Rows of this host's
 * store, and rows of no host (store_host '': a `lis refresh` cleared it, and the row is waiting for its download, or
 * went straight back to live on a 304, its files still where they were made): those whose files are here are sent.
 * With a `token` (shared stores), not the rows another live pass has claimed.
 */
export async function servedRowsLacking(
  db: Db,
  frontend: string,
  country: string,
  storeHost: string,
  afterId: string,
  limit: number,
  token: number | null = null,
): Promise<ServedRow[]> {
  const { rows } = await sql<ServedRow>`
    ${token === null ? sql`` : sql`WITH ${livePassesCte()}`}
    SELECT li.id, li.country, li.image_url, li.image_hash, li.datasource_id, ${servedData('li')} AS image_data, li.human_classified,
           li.image_class, li.attempts, li.store_host, ${servedFilesDigest('li')} AS served_digest,
           (li.store_host = ${storeHost} AND li.stage = 'live' AND li.state = 'done') AS own
      FROM live_images li
     WHERE li.country = ${country} AND li.store_host IN (${storeHost}, '') AND ${isServed('li')}
       AND li.id > ${afterId}::bigint
       AND NOT EXISTS (SELECT 1 FROM frontend_pushes fp
                        WHERE fp.frontend = ${frontend} AND fp.country = li.country AND fp.image_hash = li.image_hash
                          AND ((fp.pushed_at IS NOT NULL AND ${servedOrWorkedOn('fp', 'li')})
                               OR fp.next_attempt_at > now() ${token === null ? sql`` : sql`OR ${claimedElsewhere('fp', token)}`}))
     ORDER BY li.id
     LIMIT ${limit}`.execute(db);
  return rows;
}

/**
 * One pass: for each enabled frontend (at once), chunk after chunk until it lacks nothing or fails. With shared
 * stores under a claim token of its own, its session named for this host and process.
 */
export async function backfillPass(options: BackfillOptions): Promise<BackfillTotals> {
  const frontends = await enabledFrontends(options.db);
  const totals: BackfillTotals = {};
  const run = async (claim: ClaimToken | null) => {
    // Every frontend's work ended before the pass is: with claims, before the session holding them ends.
    const settled = await Promise.allSettled(frontends.map(async (f) => (totals[f.name] = await backfillFrontend(f, options, claim))));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    return totals;
  };
  if (!options.config.stores.shared || frontends.length === 0) return run(null);
  const name = `lis_pusherd backfill on ${options.config.host} pid ${process.pid}`;
  return withClaimToken(options.db, serviceQueryBounds(options.config), name, run);
}

async function backfillFrontend(frontend: Frontend, options: BackfillOptions, claim: ClaimToken | null): Promise<FrontendTotals> {
  const { config, db, log, country } = options;
  const scope = { scope: 'Push::backfill' };
  const storeHost = claimHostFor('push', config);
  const token = claim?.token ?? null;
  const totals: FrontendTotals = { pushed: 0, failed: 0, elsewhere: [] };
  let afterId = '0';
  let failedTransfer = false;
  while (!options.signal.aborted) {
    const found = await servedRowsLacking(db, frontend.name, country, storeHost, afterId, options.chunkSize, token);
    if (found.length === 0) break;
    afterId = found[found.length - 1].id;
    let claimed = found;
    if (claim) {
      // Claims made now would be void at once: another host could send the same rows.
      if (claim.lost) throw new LisError('ERR_BACKFILL_SESSION_LOST', `the database session holding this pass's claims was lost: ${errorMessage(claim.lost)}`);
      const ids = found.map((r) => r.id);
      const ours = await claimRows(db, frontend.name, claim.token, ids);
      claimed = found.filter((r) => ours.has(r.id));
      // All taken by other hosts since the look: on to the next rows.
      if (claimed.length === 0) continue;
    }
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
    // Recorded first: a pass that looks in between finds the rows sent, not free to send again.
    if (token !== null) await releaseClaims(db, frontend.name, token);
    totals.pushed += results.filter((r) => r.error === null).length;
    totals.failed += results.filter((r) => r.error !== null).length;
    // A frontend that failed is still down: the rest of its backlog waits for the next pass.
    if (failedTransfer) break;
  }
  // Rows other hosts are sending: the loop watches their claims, in case one of them dies before it is done.
  if (token !== null && !failedTransfer && !options.signal.aborted) totals.elsewhere = await claimsElsewhere(db, frontend.name, country, token);
  return totals;
}

/**
 * Runs backfill beside the chunk loop. By hand: one pass, which the daemon
 * waits for before it exits. Service mode: a pass at start, then again when
 * the frontends change (added, enabled; looked at every `queue.pollSeconds`)
 * or every `push.backfillCheckSeconds` in any case (a frontend whose pushes
 * failed is retried by then: its records' backoff has passed). With shared
 * stores, a pass that left rows to other hosts' passes (they claimed them)
 * is followed, by hand as well, by a look at their claims every
 * `queue.pollSeconds` (not a pass: a pass reads every served row) until
 * they let go; claims of a pass that ended without sending its rows (its host
 * died) are cleared, and a pass then sends those rows.
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
    const { db, config, log, country } = this.options;
    const scope = { scope: 'Push::backfill' };
    const signal = this.stopper.signal;
    let lastVersion = '';
    let lastPass = -Infinity;
    // Other hosts' passes held rows a frontend lacks at the end of the last pass: watched until they let go.
    let waiting = false;
    while (!signal.aborted) {
      const version = await frontendsVersion(db).catch(() => lastVersion);
      let due = version !== lastVersion || performance.now() - lastPass >= config.push.backfillCheckSeconds * 1000;
      if (waiting && !due) {
        // Cheap, unlike a pass (which reads every served row): only the claims are read.
        const claims = await clearEndedClaims(db, country).catch((error: Error) => {
          log.warn(`Cannot read backfill claims: ${errorMessage(error)}; left to the next pass`, scope);
          return { freed: 0, held: 0 };
        });
        if (claims.freed)
          log.info(
            `Backfill: ${claims.freed} rows were claimed by passes that ended before they sent them (a host stopped, or lost the database): sending them`,
            scope,
          );
        due = claims.freed > 0;
        waiting = !due && claims.held > 0;
      }
      if (due) {
        lastVersion = version;
        lastPass = performance.now();
        waiting = false;
        try {
          const totals = await backfillPass({ ...this.options, signal });
          const moved = Object.entries(totals).filter(([, t]) => t.pushed || t.failed);
          if (moved.length)
            log.info(`Backfill pass: ${moved.map(([f, t]) => `${f} +${t.pushed}${t.failed ? ` (${t.failed} failed)` : ''}`).join(', ')}`, scope);
          const held = describeHeldElsewhere(totals);
          waiting = held !== '';
          if (waiting) log.info(`Backfill: ${held}; watching their claims every ${config.queue.pollSeconds}s, in case a host stops before it is done`, scope);
        } catch (error) {
          log.error(`Backfill pass failed: ${errorMessage(error)}; trying again later`, scope);
        }
      }
      if (!this.options.service && !waiting) return;
      await abortableDelay(config.queue.pollSeconds * 1000, signal);
    }
  }
}

/** Pure: the rows each frontend lacks that other hosts' passes hold, for the log ('' when none). */
export function describeHeldElsewhere(totals: BackfillTotals): string {
  return Object.entries(totals)
    .filter(([, t]) => t.elsewhere.length)
    .map(([f, t]) => `${f}: ${t.elsewhere.map((e) => `${e.rows} rows being sent by ${e.name}`).join(', ')}`)
    .join('; ');
}
