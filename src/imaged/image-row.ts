import { sql } from 'kysely';
import type { LisConfig } from '../config/config-schema.ts';
import type { Db } from '../db/connect.ts';
import { runPrepared } from '../db/prepared-query.ts';
import { NotMadeError } from './make-preset.ts';

/** What lis_imaged needs of an image's row to decide how to make a thumbnail of it. */
export interface RowState {
  id: string;
  country: string;
  image_hash: string;
  image_url: string;
  datasource_id: number;
  stage: string;
  state: string;
  locked_by: string | null;
  /** The host whose stores hold its files ('' before download, or with stores.shared). */
  store_host: string;
  /** The thumbnails' version in image_data (1 when unversioned), and in live_data (null: never live). */
  version: number;
  live_version: number | null;
  /** Whether image_data or live_data records the preset asked for at the version asked for (false when none was named). */
  recorded: boolean;
  /** image_data.original (width, height, format, bytes), when thumbnailed. */
  original: { width: number; height: number; format: string; bytes: number } | null;
}

/** Advisory-lock namespace of lis_imaged: one generation per image across processes and hosts. */
const LOCK_NAMESPACE = 0x696d6764;
/** PostgreSQL's SQLSTATE when lock_timeout ends a wait. */
const LOCK_NOT_AVAILABLE = '55P03';

/** What is asked for of an image: a preset at a version (a thumbnail's name), or nothing in particular. */
export interface Wanted {
  preset: string;
  version: number;
}

/** The columns of RowState (id as text, so to_jsonb keeps every digit of a bigint). */
const rowSelect = (country: string, hash: string, wanted: Wanted | null) => sql`
  SELECT id::text AS id, country, image_hash, image_url, datasource_id, stage, state, locked_by, store_host,
         coalesce((image_data->>'version')::int, 1) AS version,
         CASE WHEN live_data IS NULL THEN NULL ELSE coalesce((live_data->>'version')::int, 1) END AS live_version,
         coalesce(${wanted !== null} AND (
           (coalesce((image_data->>'version')::int, 1) = ${wanted?.version ?? 0} AND image_data->'presets' ? ${wanted?.preset ?? ''}) OR
           (coalesce((live_data->>'version')::int, 1) = ${wanted?.version ?? 0} AND live_data->'presets' ? ${wanted?.preset ?? ''})), false) AS recorded,
         image_data->'original' AS original
    FROM live_images WHERE country = ${country} AND image_hash = ${hash}`;

/**
 * The row of `<country>/<hash>`, or null. A prepared statement on a pool (every request reads its row first):
 * PostgreSQL plans it once per connection, where planning cost twice as much as the read (60 against 170 µs).
 */
export async function readRow(db: Db, country: string, hash: string, wanted: Wanted | null = null): Promise<RowState | null> {
  const [row] = await runPrepared(db, sql<RowState>`${rowSelect(country, hash, wanted)}`);
  return row ?? null;
}

/** Beyond the stages' own bounds: store writes and the database's round trips of a generation. */
const GENERATION_SLACK_SECONDS = 10;

/**
 * How long a generation may leave its lock's transaction idle, at most: it runs a download (its total bound), a
 * thumbnail (its bound) and waits for a daemon's file (imaged.timeoutSeconds) while holding it. Longer, its
 * client is gone (a lost path) and the server may end the session, freeing the image's lock. Pure.
 */
export function generationIdleBoundMs(config: Pick<LisConfig, 'download' | 'thumbnail' | 'imaged'>): number {
  return (config.download.timeouts.totalSeconds + config.thumbnail.timeoutSeconds + config.imaged.timeoutSeconds + GENERATION_SLACK_SECONDS) * 1000;
}

/**
 * Takes the image's advisory lock for the rest of `trx` and reads its row.
 * Usually one round trip: the lock is tried and the row read in the same
 * statement; taken at once, no other generation was at this image, so the row
 * is as current as a separate read would be. Held by another generation: waits
 * for it (bounded by lock_timeout, `timeoutMs`) and reads the row afterwards,
 * as that generation left it.
 */
export async function lockImageRow(trx: Db, country: string, hash: string, wanted: Wanted, timeoutMs: number): Promise<RowState | null> {
  const key = `${country}/${hash}`;
  const [first] = await runPrepared(
    trx,
    sql<{ locked: boolean; row: RowState | null }>`
    SELECT pg_try_advisory_xact_lock(${LOCK_NAMESPACE}::int, hashtext(${key})) AS locked,
           (SELECT to_jsonb(r) FROM (${rowSelect(country, hash, wanted)}) r) AS row`,
  );
  if (first.locked) return first.row;
  // One round trip: the wait for the lock is bounded by lock_timeout, set first in the same statement.
  try {
    await sql`SELECT set_config('lock_timeout', ${`${timeoutMs}ms`}, true), pg_advisory_xact_lock(${LOCK_NAMESPACE}::int, hashtext(${key}))`.execute(trx);
  } catch (error) {
    // lock_not_available: the other generation outlasted our wait. Busy, not a bug: requests that joined this
    // generation after it began waiting are still within their own time, and get this answer (503, Retry-After).
    if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE)
      throw new NotMadeError(503, `another generation of this image held it for over ${timeoutMs} ms; try again shortly`);
    throw error;
  }
  return readRow(trx, country, hash, wanted);
}
