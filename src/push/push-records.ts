import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { BackoffPolicy } from '../queue/backoff.ts';
import { FRONTEND_ERROR_CLASSES } from './frontend-registry.ts';
import { pushKey } from './push-plan.ts';

/**
 * The fingerprint of what a row's frontends must hold: md5 of its presets
 * (paths, sizes, bytes). Computed by the database on both sides of every
 * comparison, so there is one definition. `alias` names a live_images row.
 */
export function filesDigest(alias: string): RawBuilder<string> {
  return sql<string>`md5(coalesce(${sql.ref(`${alias}.image_data`)}->'presets', 'null'::jsonb)::text)`;
}

/**
 * SQL: the row `alias` is served (the Interface answers with it, the site shows it): live, or live before
 * and being reworked meanwhile (`live_data` kept: refreshed, re-thumbnailed, sent back), not being purged.
 */
export function isServed(alias: string): RawBuilder<boolean> {
  const li = (column: string) => sql.ref(`${alias}.${column}`);
  return sql<boolean>`((${li('live_data')} IS NOT NULL OR (${li('stage')} = 'live' AND ${li('state')} = 'done'))
                       AND ${li('last_error_class')} IS DISTINCT FROM 'expired')`;
}

/** SQL: what the frontends serve of row `alias`: live_data (image_data for a live row from before live_data). */
export function servedData(alias: string): RawBuilder<unknown> {
  return sql`coalesce(${sql.ref(`${alias}.live_data`)}, ${sql.ref(`${alias}.image_data`)})`;
}

/** The fingerprint of the files served (servedData), as filesDigest's of the files worked on. */
export function servedFilesDigest(alias: string): RawBuilder<string> {
  return sql<string>`md5(coalesce(${servedData(alias)}->'presets', 'null'::jsonb)::text)`;
}

/**
 * SQL: frontend `frontend` can serve row `li`: it has the version served, or the one being worked on (which
 * the push stage sends it, and which is served as soon as every enabled frontend has it).
 */
export function hasServedPush(frontend: RawBuilder<string>): RawBuilder<boolean> {
  return sql<boolean>`EXISTS (SELECT 1 FROM frontend_pushes fp
                               WHERE fp.frontend = ${frontend} AND fp.country = li.country AND fp.image_hash = li.image_hash
                                 AND fp.pushed_at IS NOT NULL AND ${servedOrWorkedOn('fp', 'li')})`;
}

/**
 * The fingerprint of the version of row `alias` being worked on, for a row not live; NULL for a live one (its
 * served version is the one: servedFilesDigest). Only then: the lag and backfill scan every row, and md5 of
 * image_data is their cost.
 */
export function workedOnFilesDigest(alias: string): RawBuilder<string | null> {
  return sql<string | null>`CASE WHEN ${sql.ref(`${alias}.stage`)} <> 'live' THEN ${filesDigest(alias)} END`;
}

/**
 * SQL: a record holding `digest` serves a row whose served and worked-on fingerprints are these
 * (servedFilesDigest, workedOnFilesDigest). Apart from servedOrWorkedOn, so that a scan of every row can
 * compute a row's two once and compare them with each frontend's record (frontendLag).
 */
export function holdsServedOrWorkedOn(digest: RawBuilder<unknown>, served: RawBuilder<unknown>, workedOn: RawBuilder<unknown>): RawBuilder<boolean> {
  return sql<boolean>`(${digest} = ${served} OR ${digest} = ${workedOn})`;
}

/** SQL: push record `fp` holds the version of row `li` served or the one worked on. */
export function servedOrWorkedOn(fp: string, li: string): RawBuilder<boolean> {
  return holdsServedOrWorkedOn(sql.ref(`${fp}.files_digest`), servedFilesDigest(li), workedOnFilesDigest(li));
}

/** SQL: frontend `frontend` has row `li` as it is now. */
export function hasCurrentPush(frontend: RawBuilder<string> | string): RawBuilder<boolean> {
  const f = typeof frontend === 'string' ? sql`${frontend}` : frontend;
  return sql<boolean>`EXISTS (SELECT 1 FROM frontend_pushes fp
                               WHERE fp.frontend = ${f} AND fp.country = li.country AND fp.image_hash = li.image_hash
                                 AND fp.pushed_at IS NOT NULL AND fp.files_digest = ${filesDigest('li')})`;
}

/** Which of these rows each frontend already has, as `pushKey(frontend, id)`. */
export async function loadCurrentPushes(db: Db, rowIds: string[], frontends: string[]): Promise<Set<string>> {
  if (rowIds.length === 0 || frontends.length === 0) return new Set();
  const { rows } = await sql<{ frontend: string; id: string }>`
    SELECT fp.frontend, li.id
      FROM live_images li
      JOIN frontend_pushes fp ON fp.country = li.country AND fp.image_hash = li.image_hash
     WHERE li.id = ANY(${rowIds}::bigint[]) AND fp.frontend = ANY(${frontends}::text[])
       AND fp.pushed_at IS NOT NULL AND fp.files_digest = ${filesDigest('li')}`.execute(db);
  return new Set(rows.map((r) => pushKey(r.frontend, r.id)));
}

export interface PushResult {
  frontend: string;
  rowId: string;
  /** null: pushed. */
  error: string | null;
  /** The failure's class: one of the frontend's own (FRONTEND_ERROR_CLASSES) does not back the record off. */
  errorClass?: string;
  /** The digest of the files sent, when not the row's image_data now (backfill sends the version served). */
  digest?: string;
}

/** Pure: does this failure say the frontend was unwell, rather than the row (its files missing, its image_data bad)? */
export function frontendFault(result: PushResult): boolean {
  return result.error !== null && (FRONTEND_ERROR_CLASSES as readonly string[]).includes(result.errorClass ?? '');
}

/**
 * Records how each (frontend, row) push went, in one statement. A success
 * stamps `pushed_at` and the files' digest; a failure keeps what the frontend
 * had before (an older version of the files, or nothing), counts the attempt
 * and sets when backfill may try again: the queue's backoff on the record's
 * attempts for a fault of the row's (its files missing from the store), but at
 * once for the frontend's own (down, full, timed out): backfill tries a down
 * frontend once per pass anyway and stops at its first failed transfer, and a
 * record backed off for each of the hours a frontend was down (6 h at most)
 * kept its rows from it that long after it was back and re-enabled.
 * Frontends removed meanwhile are skipped.
 */
export async function recordPushResults(db: Db, results: PushResult[], backoff: BackoffPolicy): Promise<number> {
  if (results.length === 0) return 0;
  // One order for every writer, so that concurrent upserts never deadlock.
  const sorted = [...results].sort((a, b) => (a.frontend < b.frontend ? -1 : a.frontend > b.frontend ? 1 : Number(BigInt(a.rowId) - BigInt(b.rowId))));
  const frontendFaults = sorted.map(frontendFault);
  const result = await sql`
    INSERT INTO frontend_pushes AS fp (frontend, country, image_hash, pushed_at, attempts, last_error, files_digest, next_attempt_at, updated_at)
    SELECT v.frontend, li.country, li.image_hash,
           CASE WHEN v.error IS NULL THEN now() END,
           CASE WHEN v.error IS NULL THEN 0 ELSE 1 END,
           left(v.error, 2000),
           CASE WHEN v.error IS NULL THEN coalesce(v.digest, ${filesDigest('li')}) END,
           CASE WHEN v.error IS NULL OR v.frontend_fault THEN now() ELSE now() + make_interval(secs => ${backoff.baseSeconds}::float8) END,
           now()
      FROM unnest(${sorted.map((r) => r.frontend)}::text[], ${sorted.map((r) => r.rowId)}::bigint[], ${sorted.map((r) => r.error)}::text[],
                  ${frontendFaults}::boolean[], ${sorted.map((r) => r.digest ?? null)}::text[])
             WITH ORDINALITY AS v(frontend, id, error, frontend_fault, digest, n)
      JOIN live_images li ON li.id = v.id
      JOIN frontends f ON f.name = v.frontend
     ORDER BY v.n
    ON CONFLICT (frontend, country, image_hash) DO UPDATE SET
           pushed_at = CASE WHEN EXCLUDED.last_error IS NULL THEN EXCLUDED.pushed_at ELSE fp.pushed_at END,
           files_digest = CASE WHEN EXCLUDED.last_error IS NULL THEN EXCLUDED.files_digest ELSE fp.files_digest END,
           attempts = CASE WHEN EXCLUDED.last_error IS NULL THEN 0 ELSE fp.attempts + 1 END,
           last_error = EXCLUDED.last_error,
           -- The insert's value is now() for a success and for a frontend's fault (v.frontend_fault): due at once.
           next_attempt_at = CASE WHEN EXCLUDED.last_error IS NULL OR EXCLUDED.next_attempt_at <= now() THEN now()
                                  ELSE now() + make_interval(secs => least(${backoff.maxSeconds}::float8,
                                                                           ${backoff.baseSeconds}::float8 * 2 ^ least(fp.attempts, 30))
                                                                     * (1 - ${backoff.jitter}::float8 * random())) END,
           updated_at = now()`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
