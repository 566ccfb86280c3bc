import fs from 'node:fs';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { LisError } from '../errors.ts';
import { wakeRowsWaitingOnFrontends as wakeRows } from '../queue/wake-rows.ts';
import { parseFrontendTarget, type FrontendTarget } from './frontend-target.ts';

export interface Frontend {
  name: string;
  target: string;
  enabled: boolean;
  parsed: FrontendTarget;
}

/** Failure classes of a push that are a frontend's trouble or our own, never the row's (see rsync-outcome.ts). */
export const FRONTEND_ERROR_CLASSES = [
  'frontend_down',
  'frontend_timeout',
  'frontend_disk_full',
  'rsync_error',
  'rsync_missing',
  'rsync_killed',
  'no_frontends',
] as const;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Pure: the problem with a frontend's name, or null when it is a good one. */
export function frontendNameProblem(name: string): string | null {
  return NAME.test(name) ? null : `frontend name ${JSON.stringify(name)}: use 1-64 letters, digits, _ . -`;
}

export async function listFrontends(db: Db): Promise<Frontend[]> {
  const rows = await db.selectFrom('frontends').select(['name', 'target', 'enabled']).orderBy('name').execute();
  return rows.map((r) => ({ ...r, parsed: parseFrontendTarget(r.target) }));
}

export async function enabledFrontends(db: Db): Promise<Frontend[]> {
  return (await listFrontends(db)).filter((f) => f.enabled);
}

/** Frontends marked down (what the frontend_down alert reads): since when, why, and which pushing host met it. */
export async function downFrontends(db: Db): Promise<Array<{ name: string; since: Date; reason: string | null; host: string | null }>> {
  const rows = await db
    .selectFrom('frontends')
    .select(['name', 'down_since', 'down_reason', 'down_host'])
    .where('down_since', 'is not', null)
    .orderBy('name')
    .execute();
  return rows.map((r) => ({ name: r.name, since: r.down_since!, reason: r.down_reason, host: r.down_host }));
}

/**
 * Adds a frontend. A local one's root is created here, once (mkdir -p): from
 * then on a missing root means its disk is not mounted, and the pushers and
 * fs_check leave it alone rather than recreate it on this host's own disk.
 */
export async function addFrontend(db: Db, name: string, target: string, enabled = true): Promise<void> {
  const nameProblem = frontendNameProblem(name);
  if (nameProblem) throw new LisError('ERR_FRONTEND_NAME', nameProblem);
  const parsed = parseFrontendTarget(target);
  if (parsed.kind === 'local') {
    try {
      fs.mkdirSync(parsed.path, { recursive: true });
    } catch (error) {
      throw new LisError('ERR_FRONTEND_ROOT', `cannot create frontend ${name}'s root ${parsed.path}: ${(error as Error).message}`);
    }
  }
  const inserted = await db
    .insertInto('frontends')
    .values({ name, target, enabled })
    .onConflict((oc) => oc.column('name').doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0)
    throw new LisError('ERR_FRONTEND_EXISTS', `frontend ${name} already exists (lis frontend remove ${name} first)`);
}

/**
 * Enables or disables a frontend. Re-enabling it makes the pushers backfill
 * the live rows it missed (they look for them when `frontends.updated_at`
 * moves); `forget` also drops its push records, so everything live is sent
 * again (rsync skips what is already there), for a frontend whose disk was
 * replaced. Disabling it lets rows that only waited for it go live at once.
 */
export async function setFrontendEnabled(db: Db, name: string, enabled: boolean, options: { forget?: boolean } = {}): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable('frontends')
      // Enabling clears a down mark: the operator says it is back (the next failure marks it again), and a mark
      // left by a pushing host since retired would never be cleared by another's success.
      .set(
        enabled ? { enabled, updated_at: sql<Date>`now()`, down_since: null, down_reason: null, down_host: null } : { enabled, updated_at: sql<Date>`now()` },
      )
      .where('name', '=', name)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) throw new LisError('ERR_NO_FRONTEND', `no frontend named ${name} (lis frontend list)`);
    if (options.forget) await trx.deleteFrom('frontend_pushes').where('frontend', '=', name).execute();
    // What it failed before it was disabled is due again: it is back now, and backfill should not wait out old backoffs.
    else if (enabled)
      await trx
        .updateTable('frontend_pushes')
        .set({ next_attempt_at: sql<Date>`now()` })
        .where('frontend', '=', name)
        .where('next_attempt_at', '>', sql<Date>`now()`)
        .execute();
  });
  // Disabled: the rows waiting for it need it no more. Enabled: the operator says it is back (mounted, refilled with
  // --full), and its rows waiting out a frontend_down backoff should not wait `queue.oursRetrySeconds` more.
  await wakeRowsWaitingOnFrontends(db);
}

/** Removes a frontend and its push records. */
export async function removeFrontend(db: Db, name: string): Promise<void> {
  const deleted = await db.deleteFrom('frontends').where('name', '=', name).executeTakeFirst();
  if (Number(deleted.numDeletedRows) === 0) throw new LisError('ERR_NO_FRONTEND', `no frontend named ${name} (lis frontend list)`);
  await wakeRowsWaitingOnFrontends(db);
}

/** Rows backing off because of a frontend are due now: the frontend they waited for may be gone. */
async function wakeRowsWaitingOnFrontends(db: Db): Promise<number> {
  return wakeRows(db, FRONTEND_ERROR_CLASSES);
}

/** Changes whenever a frontend is added, enabled, disabled or removed: backfill watches it. */
export async function frontendsVersion(db: Db): Promise<string> {
  const { rows } = await sql<{ v: string }>`SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') AS v FROM frontends WHERE enabled`.execute(db);
  return rows[0].v;
}
