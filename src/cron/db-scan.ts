import fs from 'node:fs';
import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage, LisError } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { listMissingClaimable } from '../queue/claimable-rows.ts';
import { endPurge, markRowsForPurge, PURGING } from '../queue/purge-rows.ts';
import { repairImpossibleRows } from '../queue/repair-rows.ts';
import { listFrontends, type Frontend } from '../push/frontend-registry.ts';
import { localRootAway, pushedTo } from '../push/frontend-root-check.ts';
import { thumbnailFilesOf, type ImageData } from '../store/image-data.ts';
import { originalPath, thumbnailStorePath } from '../store/store-layout.ts';
import { deleteFrontendFiles, isOurFrontendName } from './frontend-files.ts';

export interface DbScanSummary {
  purged: number;
  /** Expired rows kept for the next run because a frontend could not be cleaned. */
  purgeDeferred: number;
  /** Rows marked for the purge that the ETL listed again meanwhile: queued anew in download, not deleted. */
  requeued: number;
  /** The frontends that could not be cleaned (why purgeDeferred is not 0). */
  uncleaned: string[];
  repaired: Record<string, number>;
}

const PURGE_BATCH = 500;

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
  let requeued = 0;
  const uncleaned = new Set<string>();
  let afterId = '0';
  for (;;) {
    // A row is marked before its files go, so that a run cut short picks it up again even if the ETL saw it
    // meanwhile: its files may be partly gone, so endPurge queues it anew rather than leave it served half.
    const select = sql<{ id: string; image_hash: string; image_data: ImageData | null; live_data: ImageData | null; store_host: string }>`
      SELECT id, image_hash, image_data, live_data, store_host FROM live_images
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
    await markRowsForPurge(
      db,
      rows.map((r) => r.id),
      config.upkeep.purgeAfterDays,
    );
    // Only the rows marked lose their files: one a worker claimed, or the ETL saw again, after the
    // SELECT above is not marked, and deleting its files would break an image still in use.
    const marked = await sql<{ id: string; image_hash: string; image_data: ImageData | null; live_data: ImageData | null; store_host: string }>`
      SELECT id, image_hash, image_data, live_data, store_host FROM live_images
       WHERE id = ANY(${rows.map((r) => r.id)}::bigint[]) AND state = 'parked' AND last_error_class = ${PURGING} ORDER BY id`.execute(db);
    const ids = marked.rows.map((r) => r.id);
    // Both versions of a row being reworked: the one served and the one worked on. Only paths named as we name
    // thumbnails: a row's image_data may break the contract (bad_image_data, a `../` path), and a purge must not
    // delete, on a frontend or in the store, whatever such a path points at.
    const filesOf = (r: (typeof rows)[number]) =>
      [...new Set([...thumbnailFilesOf(r.live_data), ...thumbnailFilesOf(r.image_data)])].filter((f) => isOurFrontendName(f, country));
    const files = marked.rows.flatMap(filesOf);
    // A disabled frontend is cleaned too when it answers (it may be enabled again), but one that does not
    // holds nothing back: disabling is what the README says to do with a frontend gone for good, and were it
    // enabled again, fs_check deletes there whatever no row accounts for.
    const failed = await removeFromFrontends(config, db, frontends, files, log);
    const failedFrontends = failed.filter((name) => frontends.some((f) => f.name === name && f.enabled));
    const leftOnDisabled = failed.filter((name) => !failedFrontends.includes(name));
    if (leftOnDisabled.length)
      log.warn(
        `${leftOnDisabled.map((n) => `${n} (disabled)`).join(', ')} could not be cleaned: ${files.length} files of expired images left there (fs_check removes them if it is enabled again)`,
        scope,
      );
    for (const r of marked.rows) {
      for (const f of filesOf(r)) fs.rmSync(thumbnailStorePath(config, f), { force: true });
      fs.rmSync(originalPath(config, country, r.image_hash), { force: true });
    }
    // Rows the ETL listed again since they were marked are queued anew here, whatever a frontend did.
    const end = await endPurge(db, country, marked.rows, { purgeAfterDays: config.upkeep.purgeAfterDays, deleteRest: failedFrontends.length === 0 });
    if (end.requeued) {
      requeued += end.requeued;
      log.warn(
        `${end.requeued} images listed again by the ETL while being purged were queued anew (download): their files were removed, and are made again`,
        scope,
      );
    }
    if (failedFrontends.length) {
      const kept = ids.length - end.requeued;
      purgeDeferred += kept;
      for (const name of failedFrontends) uncleaned.add(name);
      log.warn(`Kept ${kept} expired rows for the next run: ${failedFrontends.join(', ')} could not be cleaned`, scope);
      continue;
    }
    purged += end.deleted;
  }
  if (purged || purgeDeferred)
    log.info(
      `${dryRun ? 'Would purge' : 'Purged'} ${purged} images not seen for ${config.upkeep.purgeAfterDays} days${purgeDeferred ? `; ${purgeDeferred} deferred` : ''}`,
      scope,
    );
  return { purged, purgeDeferred, requeued, uncleaned: [...uncleaned] };
}

/**
 * Removes files from every frontend (enabled or not: a disabled one may be re-enabled). Returns the names of the
 * frontends that failed. A local frontend whose disk is not mounted has failed too: removing from its missing (or
 * empty, unmarked) root removes nothing, and the rows would be deleted with their files still on the disk.
 */
export async function removeFromFrontends(config: LisConfig, db: Db, frontends: Frontend[], files: string[], log: Logger): Promise<string[]> {
  const failed: string[] = [];
  await Promise.all(
    frontends.map(async (f) => {
      try {
        if (files.length === 0) return;
        const away = await localRootAway(f.name, f.parsed, () => pushedTo(db, f.name));
        if (away) throw new LisError('ERR_FRONTEND_AWAY', `cannot delete ${files.length} files: ${away}`);
        await deleteFrontendFiles(config.push, f.parsed, files);
      } catch (error) {
        failed.push(f.name);
        // Only an enabled frontend's failure holds the purge back (an error); a disabled one's is expected.
        if (f.enabled) log.error(`${f.name}: ${errorMessage(error)}`, { scope: 'CronFrontend::remove' });
        else log.warn(`${f.name} (disabled): ${errorMessage(error)}`, { scope: 'CronFrontend::remove' });
      }
    }),
  );
  return failed;
}

/**
 * Rows in states no code path should leave them in, put right. Each rule is
 * one statement; the counts say what was found.
 */
async function repairImpossibleStates({
  config,
  db,
  log,
  country,
  dryRun,
}: {
  config: LisConfig;
  db: Db;
  log: Logger;
  country: string;
  dryRun: boolean;
}): Promise<Record<string, number>> {
  const counts = await repairImpossibleRows(db, country, config.manager.staleWorkerSeconds, dryRun);
  for (const [name, n] of Object.entries(counts)) {
    if (n) log.warn(`${dryRun ? 'Would repair' : 'Repaired'} ${n} rows: ${name.replaceAll('_', ' ')}`, { scope: 'CronFrontend::db_scan' });
  }
  // The alarm: no operation leaves a claimable row unlisted.
  counts.claimable_but_unlisted = await listMissingClaimable(db, country, { dryRun });
  if (counts.claimable_but_unlisted)
    log.warn(`${dryRun ? 'Would list' : 'Listed'} ${counts.claimable_but_unlisted} claimable rows missing from claimable_rows`, {
      scope: 'CronFrontend::db_scan',
    });
  return counts;
}
