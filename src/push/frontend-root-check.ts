import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { storeMarkState } from '../daemon/store-check.ts';
import type { FrontendTarget } from './frontend-target.ts';

/** The file at a local frontend's root that says "this is the frontend's disk" (fs_check walks countries only). */
export const FRONTEND_MARKER = '.imagesys-frontend';

/**
 * The empty file lis_cron_frontend's fs_check writes at a frontend's root before it lists it, whose modification
 * time is the frontend's clock (readFrontendClock). No sign of a mounted disk: a root holding only it is empty.
 */
export const CLOCK_FILE = '.imagesys-clock';

/** Has anything ever been pushed to this frontend (and not forgotten by `lis frontend enable --full`)? */
export async function pushedTo(db: Db, frontend: string): Promise<boolean> {
  const { rows } = await sql<{ any: boolean }>`
    SELECT EXISTS (SELECT 1 FROM frontend_pushes WHERE frontend = ${frontend} AND pushed_at IS NOT NULL) AS any`.execute(db);
  return rows[0].any;
}

/**
 * Why a local frontend cannot be written now, or null when it can (and for remote targets, which rsync
 * reaches and judges itself). Writing to a disk that is not mounted would fill the pushing host's own disk
 * (rsync --mkpath recreates a missing root) and fs_check would read the frontend as empty, so:
 * - a missing root (it is made when the frontend is added): not mounted;
 * - a root that is itself the mount point exists without the disk, as an empty folder: so the root is
 *   marked (FRONTEND_MARKER) at its first push, and an empty, unmarked root to which rows were pushed
 *   (`pushedBefore`) is a disk not mounted too. With the database away, it is neither judged nor marked.
 */
export async function localRootAway(name: string, target: FrontendTarget, pushedBefore: () => Promise<boolean>): Promise<string | null> {
  if (target.kind !== 'local') return null;
  let state: Awaited<ReturnType<typeof storeMarkState>>;
  try {
    if (!(await stat(target.path)).isDirectory()) return null; // a file in its place: rsync says so in its own words
    state = await storeMarkState(target.path, FRONTEND_MARKER, [CLOCK_FILE]);
  } catch (error) {
    // Only "not there" is an unmounted disk; anything else (no permission) rsync reports in its own words.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return null;
    return `frontend ${name}'s root ${target.path} is missing (not mounted?); if its disk was replaced by an empty one, make the folder (mkdir -p ${target.path}) and send everything again: lis frontend enable ${name} --full`;
  }
  if (state === 'marked') return null;
  const pushed = state === 'empty' ? await pushedBefore().catch(() => null) : false;
  if (pushed === null) return null;
  if (pushed)
    return `frontend ${name}'s root ${target.path} is empty and has no ${FRONTEND_MARKER}, but rows were pushed there: is its disk mounted? (If its files are really gone, send everything again: lis frontend enable ${name} --full)`;
  // Not writable: rsync will say why in its own words.
  await writeFile(
    path.join(target.path, FRONTEND_MARKER),
    `An ImageSys frontend root, marked ${new Date().toISOString()}. Its absence tells an unmounted disk from the frontend: do not remove.\n`,
  ).catch(() => {});
  return null;
}
