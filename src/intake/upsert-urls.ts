import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';

export interface UrlRow {
  datasourceId: number;
  url: string;
  /** The input line it came from, to name it when it is not stored. */
  line?: number;
}

/**
 * URLs in the one order every upsert takes them. INSERT ... ON CONFLICT locks
 * each row's unique-index entry in the order it meets the rows, so two
 * statements with overlapping URLs in different orders (8 listing builds at
 * once, two `lis enqueue` batches) each wait for the other: 40P01 deadlock,
 * and one of them fails. In one total order (code units, not a collation) no
 * such cycle can form.
 */
export function inLockOrder(urls: string[]): string[] {
  return [...urls].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Queues new URLs and refreshes `last_seen` of known ones, in one statement
 * for the whole batch. Returns how many rows were new.
 */
export async function upsertUrls(db: Db, country: string, rows: UrlRow[]): Promise<{ inserted: number; refreshed: number }> {
  // ON CONFLICT may not touch one row twice in a statement: a URL repeated within a batch goes in once.
  const byUrl = new Map(rows.map((r) => [r.url, r]));
  const unique = inLockOrder([...byUrl.keys()]).map((url) => byUrl.get(url)!);
  const datasources = [...new Set(unique.map((r) => r.datasourceId))];
  await sql`
    INSERT INTO datasources (country, datasource_id)
    SELECT ${country}, unnest(${datasources}::int[])
    ON CONFLICT DO NOTHING`.execute(db);
  const { rows: result } = await sql<{ inserted: string }>`
    WITH upserted AS (
      INSERT INTO live_images AS li (country, datasource_id, image_url)
      SELECT ${country}, d, u FROM unnest(${unique.map((r) => r.datasourceId)}::int[], ${unique.map((r) => r.url)}::text[]) AS v(d, u)
      ON CONFLICT (country, image_hash) DO UPDATE SET last_seen = now()
      RETURNING (xmax = 0) AS inserted)
    SELECT count(*) FILTER (WHERE inserted) AS inserted FROM upserted`.execute(db);
  const inserted = Number(result[0].inserted);
  return { inserted, refreshed: rows.length - inserted };
}
