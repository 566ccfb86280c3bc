import fs from 'node:fs';
import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { listMissingClaimable } from '../queue/claimable-rows.ts';
import { listFrontends, type Frontend } from '../push/frontend-registry.ts';
import { thumbnailFilesOf, type ImageData } from '../store/image-data.ts';
import { originalPath, thumbnailStorePath } from '../store/store-layout.ts';
import { deleteFrontendFiles } from './frontend-files.ts';

export interface DbScanSummary {
  purged: number;
  /** Expired rows kept for the next run because a frontend could not be cleaned. */
  purgeDeferred: number;
  repaired: Record<string, number>;
}

const PURGE_BATCH = 500;

/** Marked while its files are being removed: parked (no daemon claims it, the search API no longer shows it). */
const PURGING = 'expired';

/**
 * The weekly full scan of one country: purges images the ETL has not seen for
 * `upkeep.purgeAfterDays` (from every frontend and the stores, then from the
 * table) and repairs rows in impossible states.
 */
export async function dbScan(ctx: { config: LisConfig; db: Db; log: Logger; country: string; dryRun: boolean }): Promise<DbScanSummary> {
  const purge = await purgeExpired(ctx);
  const repaired = await repairImpossibleStates(ctx);
  return { ...purge, repaired };
}

async function purgeExpired({ config, db, log, country, dryRun }: { config: LisConfig; db: Db; log: Logger; country: string; dryRun: boolean }) {
  const scope = { scope: 'CronFrontend::db_scan' };
  const cutoff = sql`now() - make_interval(secs => ${config.upkeep.purgeAfterDays * 86400})`;
  const frontends = await listFrontends(db);
  let purged = 0;
  let purgeDeferred = 0;
  let afterId = '0';
  for (;;) {
    // A row is marked before its files go, so that a run cut short picks it up again
    // even if the ETL saw it meanwhile: it will simply be queued anew.
    const select = sql<{ id: string; image_hash: string; image_data: ImageData | null; store_host: string }>`
      SELECT id, image_hash, image_data, store_host FROM live_images
       WHERE country = ${country} AND id > ${afterId}::bigint AND locked_by IS NULL
         AND (last_seen < ${cutoff} OR (state = 'parked' AND last_error_class = ${PURGING}))
       ORDER BY id LIMIT ${PURGE_BATCH}`;
    const { rows } = await select.execute(db);
    if (rows.length === 0) break;
    afterId = rows[rows.length - 1].id;
    if (dryRun) {
      purged += rows.length;
      continue;
    }
    const ids = rows.map((r) => r.id);
    await sql`UPDATE live_images SET state = 'parked', last_error_class = ${PURGING}, last_error = 'expired: not seen by the ETL for ' || ${config.upkeep.purgeAfterDays}::text || ' days', updated_at = now()
               WHERE id = ANY(${ids}::bigint[]) AND locked_by IS NULL`.execute(db);
    const files = rows.flatMap((r) => thumbnailFilesOf(r.image_data));
    const failedFrontends = await removeFromFrontends(config, frontends, files, log);
    for (const r of rows) {
      for (const f of thumbnailFilesOf(r.image_data)) fs.rmSync(thumbnailStorePath(config, f), { force: true });
      fs.rmSync(originalPath(config, country, r.image_hash), { force: true });
    }
    if (failedFrontends.length) {
      purgeDeferred += rows.length;
      log.warn(`Kept ${rows.length} expired rows for the next run: ${failedFrontends.join(', ')} could not be cleaned`, scope);
      continue;
    }
    const deleted = await db.transaction().execute(async (trx) => {
      await sql`DELETE FROM frontend_pushes WHERE country = ${country} AND image_hash = ANY(${rows.map((r) => r.image_hash)}::text[])`.execute(trx);
      const result = await sql`DELETE FROM live_images WHERE id = ANY(${ids}::bigint[]) AND state = 'parked' AND last_error_class = ${PURGING}`.execute(trx);
      return Number(result.numAffectedRows ?? 0);
    });
    purged += deleted;
  }
  if (purged || purgeDeferred) log.info(`${dryRun ? 'Would purge' : 'Purged'} ${purged} images not seen for ${config.upkeep.purgeAfterDays} days${purgeDeferred ? `; ${purgeDeferred} deferred` : ''}`, scope);
  return { purged, purgeDeferred };
}

/** Removes files from every frontend (enabled or not: a disabled one may be re-enabled). Returns the frontends that failed. */
export async function removeFromFrontends(config: LisConfig, frontends: Frontend[], files: string[], log: Logger): Promise<string[]> {
  const failed: string[] = [];
  await Promise.all(
    frontends.map(async (f) => {
      try {
        await deleteFrontendFiles(config.push, f.parsed, files);
      } catch (error) {
        failed.push(f.name);
        log.error(`${f.name}: ${errorMessage(error)}`, { scope: 'CronFrontend::remove' });
      }
    }),
  );
  return failed;
}

/**
 * Rows in states no code path should leave them in, put right. Each rule is
 * one statement; the counts say what was found.
 */
async function repairImpossibleStates({ config, db, log, country, dryRun }: { config: LisConfig; db: Db; log: Logger; country: string; dryRun: boolean }): Promise<Record<string, number>> {
  const stale = sql`now() - make_interval(secs => ${config.manager.staleWorkerSeconds})`;
  const rules: Record<string, { where: ReturnType<typeof sql>; set: ReturnType<typeof sql> }> = {
    done_but_not_live: { where: sql`stage <> 'live' AND state = 'done'`, set: sql`state = 'waiting', next_attempt_at = now()` },
    live_but_waiting: { where: sql`stage = 'live' AND state = 'waiting' AND image_data IS NOT NULL AND locked_by IS NULL`, set: sql`state = 'done'` },
    no_image_data_after_thumbnail: {
      where: sql`stage IN ('push', 'live') AND image_data IS NULL AND locked_by IS NULL AND state <> 'parked'`,
      set: sql`stage = 'thumbnail', state = 'waiting', attempts = 0, next_attempt_at = now()`,
    },
    locked_but_not_claimable: { where: sql`locked_by IS NOT NULL AND state <> 'waiting'`, set: sql`locked_by = NULL, locked_at = NULL` },
    locked_by_unknown_worker: {
      where: sql`locked_by IS NOT NULL AND locked_at < ${stale}
                 AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = live_images.locked_by AND w.stopped_at IS NULL AND w.heartbeat_at > ${stale})`,
      set: sql`locked_by = NULL, locked_at = NULL`,
    },
  };
  const counts: Record<string, number> = {};
  for (const [name, rule] of Object.entries(rules)) {
    const result = dryRun
      ? await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE country = ${country} AND ${rule.where}`.execute(db).then((r) => Number(r.rows[0].n))
      : await sql`UPDATE live_images SET ${rule.set}, updated_at = now() WHERE country = ${country} AND ${rule.where}`.execute(db).then((r) => Number(r.numAffectedRows ?? 0));
    counts[name] = result;
    if (result) log.warn(`${dryRun ? 'Would repair' : 'Repaired'} ${result} rows: ${name.replaceAll('_', ' ')}`, { scope: 'CronFrontend::db_scan' });
  }
  // After the rules above, which unlock rows without listing them for claims.
  counts.claimable_but_unlisted = await listMissingClaimable(db, country, { dryRun });
  if (counts.claimable_but_unlisted) log.warn(`${dryRun ? 'Would list' : 'Listed'} ${counts.claimable_but_unlisted} claimable rows missing from claimable_rows`, { scope: 'CronFrontend::db_scan' });
  return counts;
}
