import readline from 'node:readline';
import type { Readable } from 'node:stream';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import { parseUrlLine } from './parse-url-line.ts';

export interface EnqueueOptions {
  country: string;
  /** For lines without their own `DATASOURCE<TAB>`. */
  datasourceId?: number;
  maxUrlLength: number;
  batchSize: number;
  /** Each bad line, as it is found. */
  onBadLine?: (lineNumber: number, reason: string, line: string) => void;
  onProgress?: (stats: EnqueueStats) => void;
}

export interface EnqueueStats {
  lines: number;
  inserted: number;
  refreshed: number;
  bad: number;
}

export interface UrlRow {
  datasourceId: number;
  url: string;
}

/**
 * Queues new URLs and refreshes `last_seen` of known ones, in one statement
 * for the whole batch. Returns how many rows were new.
 */
export async function upsertUrls(db: Db, country: string, rows: UrlRow[]): Promise<{ inserted: number; refreshed: number }> {
  // ON CONFLICT may not touch one row twice in a statement: a URL repeated within a batch goes in once.
  const unique = [...new Map(rows.map((r) => [r.url, r])).values()];
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

/**
 * Reads URL lines from a stream and queues them in batches, two batches in
 * flight so that parsing and the database overlap. Bad lines are reported
 * with their numbers and skipped; the rest goes in.
 */
export async function enqueueUrlStream(db: Db, input: Readable, options: EnqueueOptions): Promise<EnqueueStats> {
  const stats: EnqueueStats = { lines: 0, inserted: 0, refreshed: 0, bad: 0 };
  const inFlight = new Set<Promise<void>>();
  const send = async (batch: UrlRow[]) => {
    const task = upsertUrls(db, options.country, batch).then((r) => {
      stats.inserted += r.inserted;
      stats.refreshed += r.refreshed;
      options.onProgress?.(stats);
    });
    inFlight.add(task);
    task.finally(() => inFlight.delete(task)).catch(() => {});
    if (inFlight.size >= 2) await Promise.race(inFlight);
  };
  let batch: UrlRow[] = [];
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    stats.lines++;
    const parsed = parseUrlLine(line, options.datasourceId, options.maxUrlLength);
    if (parsed.kind === 'skip') continue;
    if (parsed.kind === 'bad') {
      stats.bad++;
      options.onBadLine?.(stats.lines, parsed.reason, line);
      continue;
    }
    batch.push({ datasourceId: parsed.datasourceId, url: parsed.url });
    if (batch.length >= options.batchSize) {
      await send(batch);
      batch = [];
    }
  }
  if (batch.length) await send(batch);
  await Promise.all(inFlight);
  return stats;
}
