import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/connect.ts';

/** One URL to queue, for its datasource. */
export interface UrlRow {
  datasourceId: number;
  url: string;
  /** The input line it came from, to name it when it is not stored. */
  line?: number;
}

/** Where a queued URL stands once the statement is done, as the Interface reports it. */
export interface EnqueuedRow {
  url: string;
  stage: string;
  /** `parked` already for a new row of a disabled datasource (see `upsert`). */
  state: string;
  lastError: string | null;
  /** Its thumbnails are on every frontend (also while it is reworked); an expired row is not. */
  live: boolean;
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
 * Queue: URLs not yet known become new rows (download, waiting; the insert
 * triggers list them in claimable_rows and park those of a disabled
 * datasource), and known ones only have `last_seen` refreshed, so that the
 * weekly purge keeps them; no queue column of a known row changes. Returns
 * how many rows were new; every other row given (a repeat in `rows` too)
 * counts as refreshed. The ETL's batches (`lis enqueue`) and the Interface's
 * `enqueue` come through here.
 */
export async function enqueueRows(db: Db, country: string, rows: UrlRow[]): Promise<{ inserted: number; refreshed: number }> {
  const unique = distinctInLockOrder(rows);
  await insertDatasources(db, country, unique);
  const { rows: result } = await sql<{ inserted: string }>`
    WITH upserted AS (${upsert(country, unique)})
    SELECT count(*) FILTER (WHERE inserted) AS inserted FROM upserted`.execute(db);
  const inserted = Number(result[0].inserted);
  return { inserted, refreshed: rows.length - inserted };
}

/**
 * Queue as `enqueueRows` does, and say where each URL stands: the
 * Interface's imagesForSiBuild, which answers a listing's photos with the
 * statement that queues them. One entry per distinct URL, in no set order.
 */
export async function enqueueRowStates(db: Db, country: string, rows: UrlRow[]): Promise<EnqueuedRow[]> {
  const unique = distinctInLockOrder(rows);
  await insertDatasources(db, country, unique);
  const { rows: result } = await sql<EnqueuedRow>`
    WITH upserted AS (${upsert(country, unique)})
    SELECT image_url AS url, stage, state, last_error AS "lastError", live FROM upserted`.execute(db);
  return result;
}

/**
 * A row no listing has named: queued by `enqueueUnseenRows` and enqueued by
 * nobody since. Its last_seen is one microsecond before its insert_time (both
 * the inserting statement's now()); an enqueue of the URL afterwards sets
 * last_seen to now(), never earlier than insert_time, so the mark goes for good.
 * Kept in the row, it survives any restart and reads the same on every host.
 */
export const UNSEEN = sql`last_seen = insert_time - interval '1 microsecond'`;

/**
 * Queue URLs that no listing named (lis_imaged's request for an origin key,
 * src/queue/origin-rows.ts): a URL not yet known becomes a row as in
 * `enqueueRows` (the same statement, the same triggers), but UNSEEN; a known
 * one is left untouched, its last_seen too (a request is not the ETL seeing
 * it). Returns the ids of the rows inserted.
 */
export async function enqueueUnseenRows(db: Db, country: string, rows: UrlRow[]): Promise<string[]> {
  const unique = distinctInLockOrder(rows);
  await insertDatasources(db, country, unique);
  const { rows: result } = await sql<{ id: string }>`
    WITH upserted AS (${upsert(country, unique, { seen: false })})
    SELECT id FROM upserted`.execute(db);
  return result.map((r) => r.id);
}

/** ON CONFLICT may not touch one row twice in a statement: a URL repeated in `rows` goes in once (its last datasource). */
function distinctInLockOrder(rows: UrlRow[]): UrlRow[] {
  const byUrl = new Map(rows.map((r) => [r.url, r]));
  return inLockOrder([...byUrl.keys()]).map((url) => byUrl.get(url)!);
}

/**
 * The rows' datasources, first and in a statement of their own: the queue's
 * lock order (claimable-rows.ts) takes control rows before any live_images
 * row, and a new datasource is committed before its first URL comes.
 */
async function insertDatasources(db: Db, country: string, rows: UrlRow[]): Promise<void> {
  const datasources = [...new Set(rows.map((r) => r.datasourceId))].sort((a, b) => a - b);
  await sql`
    INSERT INTO datasources (country, datasource_id)
    SELECT ${country}, unnest(${datasources}::int[])
    ON CONFLICT DO NOTHING`.execute(db);
}

/**
 * The one upsert every operation shares, as the CTE `upserted`; `rows` are
 * distinct and in lock order. `seen` (a listing named the URLs): a new row
 * is seen now, a known row's last_seen is refreshed (never to before its
 * insert, see UNSEEN). Not seen: a new row is UNSEEN, and a known row is left
 * alone (and not returned). RETURNING shows a new row before
 * live_images_park_disabled (an AFTER trigger) parks it: `state` says what
 * that trigger does. The disabled datasources are read once per statement
 * (an InitPlan), not looked up for every row.
 */
function upsert(country: string, rows: UrlRow[], { seen }: { seen: boolean } = { seen: true }): RawBuilder<unknown> {
  return sql`
    INSERT INTO live_images AS li (country, datasource_id, image_url, last_seen)
    SELECT ${country}, d, u, ${seen ? sql`now()` : sql`now() - interval '1 microsecond'`}
      FROM unnest(${rows.map((r) => r.datasourceId)}::int[], ${rows.map((r) => r.url)}::text[]) AS v(d, u)
    ON CONFLICT (country, image_hash) ${seen ? sql`DO UPDATE SET last_seen = greatest(now(), li.insert_time)` : sql`DO NOTHING`}
    RETURNING li.id::text AS id, (li.xmax = 0) AS inserted, li.image_url, li.stage,
      CASE WHEN li.xmax = 0 AND li.state = 'waiting'
            AND li.datasource_id = ANY(ARRAY(SELECT d.datasource_id FROM datasources d WHERE d.country = ${country} AND NOT d.enabled))
           THEN 'parked' ELSE li.state END AS state,
      li.last_error, (li.live_data IS NOT NULL AND li.last_error_class IS DISTINCT FROM 'expired') AS live`;
}
