import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { hasCurrentPush, hasServedPush, isServed } from './push-records.ts';

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
 * Per-frontend lag, for the worker report and `lis frontend list`. One scan
 * of the rows live or in push (of one country, or all), checking each
 * frontend's record: fine for a report, not for a hot loop.
 */
export async function frontendLag(db: Db, options: { country?: string } = {}): Promise<FrontendLag[]> {
  const country = options.country ? sql`AND li.country = ${options.country}` : sql``;
  // Its last push and last error of that country too: another country's push an hour ago must not hide that
  // this one's have failed since yesterday.
  const pushCountry = options.country ? sql`AND country = ${options.country}` : sql``;
  const { rows } = await sql<{ frontend: string; enabled: boolean; live: string; push: string; last_pushed_at: Date | null; last_error: string | null }>`
    SELECT f.name AS frontend, f.enabled,
           (SELECT count(*) FROM live_images li
             WHERE ${isServed('li')} ${country} AND NOT ${hasServedPush(sql`f.name`)}) AS live,
           (SELECT count(*) FROM live_images li
             WHERE li.stage = 'push' AND li.state = 'waiting' ${country} AND NOT ${hasCurrentPush(sql`f.name`)}) AS push,
           (SELECT max(pushed_at) FROM frontend_pushes WHERE frontend = f.name ${pushCountry}) AS last_pushed_at,
           (SELECT last_error FROM frontend_pushes WHERE frontend = f.name ${pushCountry} ORDER BY updated_at DESC LIMIT 1) AS last_error
      FROM frontends f
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
