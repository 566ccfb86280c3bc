import { sql } from 'kysely';
import type { Db } from '../../src/db/connect.ts';
import { listMissingClaimable } from '../../src/queue/claimable-rows.ts';

/** Inserts `count` rows the way an ETL would (country, datasource, URL), returning nothing. */
export async function insertUrls(db: Db, country: string, count: number, options: { datasourceId?: number; prefix?: string } = {}): Promise<void> {
  const prefix = options.prefix ?? `http://images.example.com/${country}/`;
  await sql`
    INSERT INTO live_images (country, datasource_id, image_url)
    SELECT ${country}, ${options.datasourceId ?? 1}, ${prefix} || g || '.jpg' FROM generate_series(1, ${count}) g`.execute(db);
}

export async function countBy(db: Db, where = sql`true`): Promise<Record<string, number>> {
  const { rows } = await sql<{ key: string; n: string }>`
    SELECT stage || '/' || state || CASE WHEN locked_by IS NULL THEN '' ELSE '/locked' END AS key, count(*) AS n
      FROM live_images WHERE ${where} GROUP BY 1 ORDER BY 1`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.key, Number(r.n)]));
}

/**
 * For a test that sets up rows by a hand-run UPDATE (which no trigger sees any
 * more): rebuilds claimable_rows from live_images, as if the rows had been
 * moved by the queue's operations.
 */
export async function relistAll(db: Db): Promise<void> {
  await sql`DELETE FROM claimable_rows`.execute(db);
  await listMissingClaimable(db);
}
