import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { FailureClass } from '../failure/failure-reasons.ts';
import { enqueueNewRows } from './enqueue-rows.ts';

/**
 * The failure classes that say an origin does not have a key, for good: a 404 or 410 (an S3 NoSuchKey and a
 * missing file under an origin folder are recorded as http_404 too). Transient ones (timeouts, 5xx) are not.
 */
export const KEY_NOT_AT_ORIGIN: readonly FailureClass[] = ['http_404', 'http_410'];

/**
 * lis_imaged's row for an origin key, queued like any new URL (`enqueueNewRows`,
 * the one insert of the queue). Returns its id when this call inserted it, null
 * when it was there already (the ETL's, or another request's). Unlike
 * `enqueueRows`, a known URL is left untouched: its last_seen stays its
 * insert_time until something else enqueues it, which is what
 * deleteMissedOriginRow reads as "nobody else wants this row".
 */
export async function insertOriginRow(db: Db, country: string, datasourceId: number, url: string): Promise<string | null> {
  const [id] = await enqueueNewRows(db, country, [{ datasourceId, url }]);
  return id ?? null;
}

/** The row is still exactly what lis_imaged inserted, failed once because the origin lacks the key, held by nobody. */
const missed = sql`stage = 'download' AND state = 'failed' AND attempts = 1 AND locked_by IS NULL
  AND last_error_class = ANY(${[...KEY_NOT_AT_ORIGIN]}::text[]) AND last_seen = insert_time`;

/** Its first download has not ended yet (new, or held by a daemon), and nobody else has enqueued it since. */
const undecided = sql`stage = 'download' AND state = 'waiting' AND attempts = 0 AND last_seen = insert_time`;

/**
 * Deletes the row `insertOriginRow` gave this request, when its first download
 * failed because the origin has no such key, so that a request for a key the
 * origin lacks leaves nothing behind. Only while it is still exactly that: in
 * download, failed once, with a not-found class, held by nobody, and never
 * enqueued since (last_seen = insert_time: the ETL's or the Interface's upsert
 * refreshes last_seen; a row they also want is kept). A failed row has no
 * claimable_rows entry and, before push, no frontend_pushes. One statement;
 * a concurrent change of the row is waited for and the conditions read again.
 * Returns whether it was deleted.
 */
export async function deleteMissedOriginRow(db: Db, id: string): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    DELETE FROM live_images WHERE id = ${id}::bigint AND ${missed}
    RETURNING id::text AS id`.execute(db);
  return rows.length > 0;
}

/**
 * The same deletion for rows whose first download was still under way when
 * their request gave up (a lis_downloadd claimed the new row first, and holds
 * it past the request's deadline): deletes those missed by now, and returns
 * the ids still undecided, to be looked at again. A row that went anywhere
 * else (downloaded, failed for another reason or retried, enqueued by the ETL)
 * is neither: it is the queue's like any other. One statement: the DELETE
 * re-reads a row a daemon changes meanwhile; the undecided ones are those of
 * the statement's snapshot that it did not delete.
 */
export async function settleMissedOriginRows(db: Db, ids: readonly string[]): Promise<{ deleted: number; undecided: string[] }> {
  if (ids.length === 0) return { deleted: 0, undecided: [] };
  const { rows } = await sql<{ id: string; deleted: boolean }>`
    WITH gone AS (DELETE FROM live_images WHERE id = ANY(${ids}::bigint[]) AND ${missed} RETURNING id)
    SELECT id::text AS id, true AS deleted FROM gone
    UNION ALL
    SELECT id::text, false FROM live_images WHERE id = ANY(${ids}::bigint[]) AND ${undecided} AND id NOT IN (SELECT id FROM gone)`.execute(db);
  return { deleted: rows.filter((r) => r.deleted).length, undecided: rows.filter((r) => !r.deleted).map((r) => r.id) };
}
