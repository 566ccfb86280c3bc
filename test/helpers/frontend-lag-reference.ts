import { sql } from 'kysely';
import type { Db } from '../../src/db/connect.ts';
import type { FrontendLag } from '../../src/push/frontend-lag.ts';
import { hasCurrentPush, hasServedPush, isServed } from '../../src/push/push-records.ts';

/**
 * frontendLag as it was before it counted every frontend in one pass (up to bf453d7): per frontend, an
 * anti-join of the rows served, and one of the rows waiting in push, against its records. The reference
 * its rewrite is checked against (test/metrics.test.ts) and the baseline bench/frontend-lag.ts times it
 * against. Kept word for word but for the name, so that both compare with what shipped.
 */
export async function frontendLagPerFrontend(db: Db, options: { country?: string } = {}): Promise<FrontendLag[]> {
  const country = options.country ? sql`AND li.country = ${options.country}` : sql``;
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
