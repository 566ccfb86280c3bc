import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { filesDigest, holdsServedOrWorkedOn, isServed, servedFilesDigest, workedOnFilesDigest } from './push-records.ts';

/** How far one frontend is behind: rows served whose served files it does not have, rows in push whose current ones. */
export interface FrontendLag {
  frontend: string;
  enabled: boolean;
  /** Rows the site serves (live, or live and being reworked) whose served files it lacks: backfill's work. */
  live: number;
  /** Rows in stage push (waiting, not failed) it lacks: the next chunks' work, or held back by it. */
  push: number;
  /** live + push. */
  total: number;
  lastPushedAt: Date | null;
  /** Its most recent push failure, with rsync's message, when its latest record failed. */
  lastError: string | null;
}

/**
 * Per-frontend lag, for `lis frontend list`, lis_metrics, the status page and the pusher's
 * lis_frontend_lag_rows. What a frontend lacks is counted as the rows it could lack less the rows it has: one
 * pass over the rows served or waiting in push (of one country, or all), each row's fingerprints computed
 * once, joined to every frontend's records at once (with its last push), and one more pass over the records
 * for the error of its latest. It was two anti-joins of the rows per frontend, each computing the md5s of
 * the rows' presets again: bench:lag, 200k rows and 3 frontends on a busy 2-core machine, 9.6 s against
 * 2.8 now; each frontend more added two such scans, now only its records to join. Still a scan of every
 * row (md5 of its presets is most of it): fine for a report, not for a hot loop.
 *
 * A row has one record per frontend at most (the key is frontend, country, image_hash), so the matched
 * records of a frontend count the rows it has. Every frontend is listed, enabled or not, with or without records.
 */
export async function frontendLag(db: Db, options: { country?: string } = {}): Promise<FrontendLag[]> {
  const country = options.country ? sql`AND li.country = ${options.country}` : sql``;
  // Its last push and last error of that country too: another country's push an hour ago must not hide that
  // this one's have failed since yesterday.
  const pushCountry = options.country ? sql`AND fp.country = ${options.country}` : sql``;
  // MATERIALIZED: each digest once per row. Inlined, the planner computes them where the join's rows meet,
  // once per (row, record): md5 of the presets per frontend again, the cost this is meant to drop.
  const { rows } = await sql<{ frontend: string; enabled: boolean; live: string; push: string; last_pushed_at: Date | null; last_error: string | null }>`
    WITH r AS MATERIALIZED (
      SELECT li.country, li.image_hash, s.served, s.pushing,
             CASE WHEN s.served THEN ${servedFilesDigest('li')} END AS served_digest,
             CASE WHEN s.served THEN ${workedOnFilesDigest('li')} END AS worked_on_digest,
             CASE WHEN s.pushing THEN ${filesDigest('li')} END AS current_digest
        FROM live_images li,
             LATERAL (SELECT ${isServed('li')} AS served, li.stage = 'push' AND li.state = 'waiting' AS pushing) s
       WHERE (s.served OR s.pushing) ${country}),
    totals AS (SELECT count(*) FILTER (WHERE served) AS served, count(*) FILTER (WHERE pushing) AS pushing FROM r),
    -- Per frontend, in one pass over its records: the rows it has (a record pushed of the version served or
    -- worked on, as backfill's servedOrWorkedOn; of the version waiting in push, as hasCurrentPush), its last
    -- push and when its latest record was written (of rows gone since too).
    has AS (
      SELECT fp.frontend,
             count(*) FILTER (WHERE fp.pushed_at IS NOT NULL AND r.served
                                AND ${holdsServedOrWorkedOn(sql.ref('fp.files_digest'), sql.ref('r.served_digest'), sql.ref('r.worked_on_digest'))}) AS served,
             count(*) FILTER (WHERE fp.pushed_at IS NOT NULL AND r.pushing AND fp.files_digest = r.current_digest) AS pushing,
             max(fp.pushed_at) AS last_pushed_at, max(fp.updated_at) AS last_updated
        FROM frontend_pushes fp LEFT JOIN r ON r.country = fp.country AND r.image_hash = fp.image_hash
       WHERE true ${pushCountry}
       GROUP BY fp.frontend),
    -- The error of its latest record. One statement records a whole chunk, at one updated_at: of those, a
    -- failure over a success, so that a row that failed is not hidden by its neighbours (and one answer).
    latest AS (
      SELECT DISTINCT ON (fp.frontend) fp.frontend, fp.last_error
        FROM frontend_pushes fp JOIN has ON has.frontend = fp.frontend AND fp.updated_at = has.last_updated
       WHERE true ${pushCountry}
       ORDER BY fp.frontend, fp.last_error IS NULL, fp.last_error)
    -- Named live and push only here: a test counts the reads of the lag by that alias of live.
    SELECT f.name AS frontend, f.enabled, totals.served - coalesce(has.served, 0) AS live,
           totals.pushing - coalesce(has.pushing, 0) AS push,
           has.last_pushed_at, latest.last_error
      FROM frontends f CROSS JOIN totals
      LEFT JOIN has ON has.frontend = f.name
      LEFT JOIN latest ON latest.frontend = f.name
     ORDER BY f.name`.execute(db);
  return rows.map((r) => ({
    frontend: r.frontend,
    enabled: r.enabled,
    live: Number(r.live),
    push: Number(r.push),
    total: Number(r.live) + Number(r.push),
    lastPushedAt: r.last_pushed_at,
    lastError: r.last_error,
  }));
}
