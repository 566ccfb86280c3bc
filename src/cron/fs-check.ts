import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log/create-logger.ts';
import { enabledFrontends, type Frontend } from '../push/frontend-registry.ts';
import { localRootAway, pushedTo } from '../push/frontend-root-check.ts';
import { thumbnailFilesOf, type ImageData } from '../store/image-data.ts';
import { deleteFrontendFiles, isOurFrontendName, isRsyncTempName, listFrontendTree, type FrontendListing } from './frontend-files.ts';
import { behindLink, isRecent, walkLocalTree, type LocalTree } from './local-files.ts';
import { tempFileVerdict } from '../store/stale-temp.ts';
import { originalPath } from '../store/store-layout.ts';
import { reworkRows } from '../queue/rework-rows.ts';
import { idsInStage, sendBackRows } from '../queue/send-back-rows.ts';
import { STORE_MARKER, storeMarkState } from '../daemon/store-check.ts';

export interface FsCheckSummary {
  /** Per frontend: orphans deleted, live rows sent back to the pusher, and the linked folders not walked (nothing judged behind them). */
  frontends: Record<string, { orphans: number; missing: number; error?: string; unwalked: string[] }>;
  thumbnailStore: { orphans: number; missing: number; partial: number; unwalked: string[]; error?: string };
  originalsStore: { orphans: number; pruned: number; missing: number; partial: number; unwalked: string[]; error?: string };
}

/** A file younger than this may be a write in progress: it is not judged. */
const SETTLE_SECONDS = 3600;

/**
 * Deals with a temp file of an atomic write: one whose writer is gone (killed mid-write: its pid names no process
 * here, or the file has not changed for `settleSeconds`, see tempFileVerdict) will never be renamed into place, so
 * it is removed; a live writer's is left alone. Returns false for files that are not temp files, which the caller
 * then judges.
 */
function handledAsTemp(file: string, full: string, tally: { partial: number }, dryRun: boolean, options: { shared: boolean; settleSeconds: number }): boolean {
  const verdict = tempFileVerdict(file, full, options);
  if (verdict === 'not_temp') return false;
  if (verdict === 'stale') {
    tally.partial++;
    if (!dryRun) fs.rmSync(full, { force: true });
  }
  return true;
}

interface RowFiles {
  id: string;
  image_hash: string;
  stage: string;
  state: string;
  store_host: string;
  locked_by: string | null;
  image_data: ImageData | null;
  live_data: ImageData | null;
  updated_at: Date;
}

/** A row's files in any version still needed: the one served and the one being worked on. */
function filesOf(r: RowFiles): string[] {
  return [...new Set([...thumbnailFilesOf(r.live_data), ...thumbnailFilesOf(r.image_data)])];
}

/** `00` .. `ff`: the first folder level, walked one at a time so memory stays small however many files there are. */
export const PREFIXES = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

async function rowsWithPrefix(db: Db, country: string, prefix: string): Promise<RowFiles[]> {
  const next = (parseInt(prefix, 16) + 1).toString(16).padStart(2, '0');
  const upper = prefix === 'ff' ? sql`true` : sql`image_hash < ${next}`;
  const { rows } = await sql<RowFiles>`
    SELECT id, image_hash, stage, state, store_host, locked_by, image_data, live_data, updated_at FROM live_images
     WHERE country = ${country} AND image_hash >= ${prefix} AND ${upper}`.execute(db);
  return rows;
}

/**
 * Walks each frontend's tree and this host's stores for one country, one
 * hash prefix at a time: files no row accounts for are deleted (orphans);
 * live rows whose files a frontend lacks go back to the pusher; rows whose
 * store files are gone go back to the stage that makes them; originals no
 * longer needed are pruned per `upkeep.pruneOriginals`. With `walkFrontends`
 * false (another host is walking them) the stores only; with `walkStores` false
 * (shared stores, walked by that host too) the stores are left alone as well.
 */
export async function fsCheck(ctx: {
  config: LisConfig;
  db: Db;
  log: Logger;
  country: string;
  dryRun: boolean;
  walkFrontends?: boolean;
  walkStores?: boolean;
}): Promise<FsCheckSummary> {
  const { config, db, log, country, dryRun } = ctx;
  const scope = { scope: 'CronFrontend::fs_check' };
  const frontends = ctx.walkFrontends === false ? [] : await enabledFrontends(db);
  const summary: FsCheckSummary = {
    frontends: Object.fromEntries(frontends.map((f) => [f.name, { orphans: 0, missing: 0, unwalked: [] }])),
    thumbnailStore: { orphans: 0, missing: 0, partial: 0, unwalked: [] },
    originalsStore: { orphans: 0, pruned: 0, missing: 0, partial: 0, unwalked: [] },
  };
  const mine = (r: RowFiles) => config.stores.shared || r.store_host === config.host;
  // A row another host now owns (its worker here was killed before finishing, and another host
  // did the work): this host's copies are leftovers, unless a worker here holds the row right now.
  // A row owned by no host yet (store_host '': waiting for download, e.g. after `lis refresh`, which
  // sends it back to live as it was on a 304) is nobody else's: its files here are kept.
  const ownedElsewhere = (r: RowFiles) =>
    !config.stores.shared && r.store_host !== '' && r.store_host !== config.host && !r.locked_by?.startsWith(`${config.host}:`);
  const listings = new Map<string, FrontendListing>();
  /**
   * A local frontend whose root is gone or empty and unmarked (its disk not mounted) would list as empty and every live row
   * would be sent back to the pusher: it is not checked. Asked again before each folder, as a disk may
   * go away during the walk.
   */
  const skipIfRootAway = async (frontend: Frontend): Promise<boolean> => {
    const away = await localRootAway(frontend.name, frontend.parsed, () => pushedTo(db, frontend.name));
    if (!away) return false;
    summary.frontends[frontend.name].error = 'root missing or empty (not mounted?)';
    log.error(`${away}; not checking it this run, nothing sent back to the pusher`, scope);
    return true;
  };
  /**
   * The same for this host's stores: a store whose root is gone (its disk not mounted) would walk as
   * empty, and every row in push would be thumbnailed again, every row in thumbnail downloaded again.
   * Asked before each folder, and skipped while missing; it is an error (the run fails) once rows of
   * this host need it (`needing`), as a host that never wrote a store has none.
   */
  const storeSkipped = async (label: string, root: string, tally: { error?: string }, needing: number): Promise<boolean> => {
    if (ctx.walkStores === false) return true;
    const away = await storeAway(root);
    if (!away) return false;
    if (needing > 0 && !tally.error) {
      tally.error = `${away} (not mounted?)`;
      log.error(`${label} ${root} ${away} (not mounted?); not checking it this run, nothing made again or downloaded again`, scope);
    }
    return true;
  };
  // When each listing was taken (the database's clock, as rows' updated_at): a remote frontend is listed
  // once, here, and its listing may be hours old by the last folder; a local one is walked folder by folder.
  const listedAt = new Map<string, Date>();
  for (const frontend of frontends) {
    if (await skipIfRootAway(frontend)) continue;
    try {
      if (frontend.parsed.kind !== 'local') listedAt.set(frontend.name, await databaseNow(db));
      // A dry run writes nothing to a frontend, not even the file that gives its clock: it judges on this host's.
      listings.set(frontend.name, await listFrontendTree(config.push, frontend.parsed, country, dryRun ? 'host' : 'frontend'));
    } catch (error) {
      summary.frontends[frontend.name].error = errorMessage(error);
      log.error(`${frontend.name}: ${errorMessage(error)}; skipping it this run`, scope);
    }
  }
  try {
    // On the database's clock, which wrote the rows' updated_at: on this host's, one two days fast pruned the
    // originals of rows live for a moment.
    const pruneBefore = (await databaseNow(db)).getTime() - config.upkeep.keepOriginalsDays * 86400_000;
    // A temp file unchanged for an hour, or past a download's whole bound if that is longer, is no live write's.
    const tempRule = { shared: config.stores.shared, settleSeconds: Math.max(SETTLE_SECONDS, config.download.timeouts.totalSeconds) };
    const countryStored = fs.existsSync(path.join(config.stores.thumbnails, country));

    for (const prefix of PREFIXES) {
      // The frontends' files first, then the rows: a file is on a frontend only once its row's image_data
      // names it, so every file seen is known to rows read after it (read before, a version pushed and made
      // live in between would look like an orphan and be deleted).
      const walkedAt = await databaseNow(db);
      const trees = new Map<string, LocalTree>();
      for (const frontend of frontends) {
        const tally = summary.frontends[frontend.name];
        const listing = listings.get(frontend.name);
        if (tally.error || !listing || (await skipIfRootAway(frontend))) continue;
        try {
          trees.set(frontend.name, listing.treeIn(prefix));
          if (frontend.parsed.kind === 'local') listedAt.set(frontend.name, walkedAt);
        } catch (error) {
          tally.error = errorMessage(error);
          log.error(`${frontend.name}: ${tally.error}; skipping it this run`, scope);
        }
      }
      const rows = await rowsWithPrefix(db, country, prefix);
      const known = new Set(rows.flatMap(filesOf));
      const dir = `${country}/${prefix}`;

      for (const frontend of frontends) {
        const tally = summary.frontends[frontend.name];
        const tree = trees.get(frontend.name);
        if (tally.error || !tree) continue;
        try {
          const present = new Set(tree.files);
          const seenAt = listedAt.get(frontend.name)!;
          // Only files named as we name thumbnails (or rsync's temp files of them, left by a transfer killed
          // hard; the listing leaves out those young enough to be written still): anything else on a
          // frontend is not ours to delete.
          const orphans = [...present].filter((f) => !known.has(f) && (isOurFrontendName(f, country) || isRsyncTempName(f, country)));
          // Files behind a link were not seen, so not judged missing: walked as empty, a linked country would
          // send every live row of it back to the pusher on every run.
          // And only rows live before the listing: one that went live since is on the frontend, not in the listing.
          // And only rows the pusher can take again (live, done, held by nobody: reworkRows moves no other): a row
          // parked for its purge, whose files db_scan removed from this frontend but not from one that was down,
          // lacks them by design, and was counted as re-pushed (its push record dropped) while nothing moved.
          const missing = rows.filter(
            (r) =>
              r.stage === 'live' &&
              r.state === 'done' &&
              r.locked_by === null &&
              r.updated_at < seenAt &&
              !rowBehindLinks(r, tree.links) &&
              thumbnailFilesOf(r.image_data).some((f) => !present.has(f)),
          );
          if (!dryRun) {
            await deleteFrontendFiles(config.push, frontend.parsed, orphans);
            await sendBackToPusher(db, country, frontend.name, missing);
          }
          tally.orphans += orphans.length;
          tally.missing += missing.length;
          noteUnwalked(tally.unwalked, tree.links);
        } catch (error) {
          tally.error = errorMessage(error);
          log.error(`${frontend.name}: ${tally.error}; skipping it this run`, scope);
        }
      }

      // This host's thumbnail store.
      const needing = (stage: string) => rows.filter((r) => mine(r) && r.stage === stage && r.state !== 'parked').length;
      if (!(await storeSkipped('thumbnail store', config.stores.thumbnails, summary.thumbnailStore, needing('push')))) {
        const elsewhere = new Set(rows.filter(ownedElsewhere).flatMap(filesOf));
        const here = new Set(rows.filter((r) => !ownedElsewhere(r)).flatMap(filesOf));
        const { files: storeFiles, links: storeLinks } = walkLocalTree(config.stores.thumbnails, dir);
        noteUnwalked(summary.thumbnailStore.unwalked, storeLinks);
        const storeSet = new Set(storeFiles);
        for (const file of storeFiles) {
          const full = path.join(config.stores.thumbnails, file);
          if (handledAsTemp(file, full, summary.thumbnailStore, dryRun, tempRule)) continue;
          if (here.has(file) || (!elsewhere.has(file) && isRecent(full, SETTLE_SECONDS))) continue;
          summary.thumbnailStore.orphans++;
          if (!dryRun) fs.rmSync(full, { force: true });
        }
        const unthumbnailed = rows.filter(
          (r) =>
            mine(r) &&
            r.stage === 'push' &&
            r.state !== 'parked' &&
            !rowBehindLinks(r, storeLinks) &&
            thumbnailFilesOf(r.image_data).some((f) => !storeSet.has(f)),
        );
        // Live rows of this host whose files are gone from the store (a thumbnail disk lost and replaced): the
        // frontends still serve them, but a frontend backfilled later (a new one, `lis frontend enable --full`
        // after its disk was replaced) is sent them from this store, and would lack them for good. Made again from
        // their original here, as a rework: they stay live meanwhile. Not those whose original is gone too (pruned
        // after going live, or lost with it): that would ask every source again; lis_imaged makes them on request.
        // Not while the store has no folder for the country: the stages take that for a disk not mounted.
        const remade = countryStored
          ? rows.filter(
              (r) =>
                mine(r) &&
                r.stage === 'live' &&
                r.state === 'done' &&
                r.locked_by === null &&
                !rowBehindLinks(r, storeLinks) &&
                thumbnailFilesOf(r.image_data).some((f) => !storeSet.has(f)) &&
                fs.existsSync(originalPath(config, country, r.image_hash)),
            )
          : [];
        summary.thumbnailStore.missing += unthumbnailed.length;
        if (!dryRun) await moveBack(db, unthumbnailed, 'push', 'thumbnail');
        // Counted as moved: one a frontend's pass above sent back to the pusher is no longer live, and is made
        // again when its push finds its files missing (bad_retry_jobs).
        summary.thumbnailStore.missing +=
          dryRun || remade.length === 0 ? remade.length : await reworkRows(db, 'thumbnail', { country, ids: remade.map((r) => r.id) });
      }

      // This host's originals.
      if (!(await storeSkipped('originals store', config.stores.originals, summary.originalsStore, needing('thumbnail')))) {
        const hashes = new Map(rows.map((r) => [r.image_hash, r]));
        const { files: originals, links: originalLinks } = walkLocalTree(config.stores.originals, dir);
        noteUnwalked(summary.originalsStore.unwalked, originalLinks);
        const originalSet = new Set(originals.map((f) => path.basename(f)));
        for (const file of originals) {
          const full = path.join(config.stores.originals, file);
          if (handledAsTemp(file, full, summary.originalsStore, dryRun, tempRule)) continue;
          const row = hashes.get(path.basename(file));
          if (!row || ownedElsewhere(row)) {
            if (!row && isRecent(full, SETTLE_SECONDS)) continue;
            summary.originalsStore.orphans++;
            if (!dryRun) fs.rmSync(full, { force: true });
          } else if (config.upkeep.pruneOriginals === 'after_live' && row.stage === 'live' && row.updated_at.getTime() < pruneBefore) {
            summary.originalsStore.pruned++;
            if (!dryRun) fs.rmSync(full, { force: true });
          }
        }
        const undownloaded = rows.filter(
          (r) =>
            mine(r) &&
            r.stage === 'thumbnail' &&
            r.state !== 'parked' &&
            !originalSet.has(r.image_hash) &&
            !behindLink(path.relative(config.stores.originals, originalPath(config, country, r.image_hash)), originalLinks),
        );
        summary.originalsStore.missing += undownloaded.length;
        if (!dryRun) await moveBack(db, undownloaded, 'thumbnail', 'download');
      }
    }
  } finally {
    for (const listing of listings.values()) listing.close();
  }
  for (const [name, t] of [
    ...Object.entries(summary.frontends),
    ['thumbnail store', summary.thumbnailStore],
    ['originals store', summary.originalsStore],
  ] as const) {
    if (t.unwalked.length) log.error(`${name}: ${describeUnwalked(t.unwalked)}: not walked (nothing behind it deleted, re-pushed or made again)`, scope);
  }
  for (const [name, t] of Object.entries(summary.frontends)) {
    log.info(
      `${name}: ${dryRun ? 'would delete' : 'deleted'} ${t.orphans} orphans, ${t.missing} live rows missing files${dryRun ? '' : ' sent back to the pusher'}${t.error ? `; not checked: ${t.error}` : ''}`,
      scope,
    );
  }
  if (ctx.walkStores !== false)
    log.info(
      `thumbnail store: ${summary.thumbnailStore.orphans} orphans, ${summary.thumbnailStore.partial} partial writes of dead processes, ${summary.thumbnailStore.missing} rows missing thumbnails; originals: ${summary.originalsStore.orphans} orphans, ${summary.originalsStore.partial} partial downloads of dead processes, ${summary.originalsStore.pruned} pruned, ${summary.originalsStore.missing} rows missing their original`,
      scope,
    );
  return summary;
}

/** The database's clock now (rows' updated_at is written by it, whatever this host's clock says). */
async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`SELECT clock_timestamp() AS now`.execute(db);
  return rows[0].now;
}

/** True when any file of the row, in either version, lies behind one of `links`: then it was not seen. */
function rowBehindLinks(r: RowFiles, links: readonly string[]): boolean {
  return links.length > 0 && filesOf(r).some((f) => behindLink(f, links));
}

/** Adds the links not yet noted (a linked country shows up under every prefix). */
function noteUnwalked(unwalked: string[], links: readonly string[]): void {
  for (const l of links) if (!unwalked.includes(l)) unwalked.push(l);
}

/** Pure: `uk is a symbolic link`, `uk/0f, uk/a3 are symbolic links`, at most five named. */
export function describeUnwalked(links: readonly string[]): string {
  const named = links.slice(0, 5).join(', ') + (links.length > 5 ? ` and ${links.length - 5} more` : '');
  return `${named} ${links.length === 1 ? 'is a symbolic link' : 'are symbolic links'}`;
}

/**
 * Live rows a frontend lacks: its push record goes, and the row is re-pushed
 * as a rework: it stays live (the Interface keeps answering with live_data)
 * while the pusher sends its files again. Push records first, then the rows
 * (the queue's lock order).
 */
async function sendBackToPusher(db: Db, country: string, frontend: string, rows: RowFiles[]): Promise<void> {
  if (rows.length === 0) return;
  await db.transaction().execute(async (trx) => {
    await sql`DELETE FROM frontend_pushes WHERE frontend = ${frontend} AND country = ${country} AND image_hash = ANY(${rows.map((r) => r.image_hash)}::text[])`.execute(
      trx,
    );
    await reworkRows(trx, 'push', { country, ids: rows.map((r) => r.id) });
  });
}

async function moveBack(db: Db, rows: RowFiles[], from: 'push' | 'thumbnail', to: 'thumbnail' | 'download'): Promise<void> {
  if (rows.length === 0) return;
  await sendBackRows(db, {
    where: idsInStage(
      rows.map((r) => r.id),
      from,
    ),
    to,
    reason: `files missing from the ${from === 'push' ? 'thumbnail' : 'originals'} store`,
    errorClass: 'store_missing',
  });
}

/**
 * Why a store's folder is not the store (null when it is): missing, or the empty, unmarked folder a disk is
 * mounted on (the daemons mark each store they write at its first check: see checkStoreMarker). Only an
 * empty folder counts as away: a store of files from before the marker is the store.
 */
export async function storeAway(root: string): Promise<string | null> {
  if (!fs.existsSync(root)) return 'is missing';
  return (await storeMarkState(root)) === 'empty' ? `is empty and has no ${STORE_MARKER}` : null;
}
