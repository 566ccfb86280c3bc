// Bench only (issue 17): would a queue table as narrow as the raw keyset's bring our drain to 0.9x of it? A
// prototype of the narrowest queue that keeps the product's semantics, measured by `bench/queue-drain.ts
// --prototype` as a third side beside ClaimCursor + finishRows and the raw keyset. Nothing in src/ uses it.
//
// proto_queue holds the queue columns only (id, country, stage, state, store_host, priority, locked_by,
// locked_at, next_attempt_at, attempts); proto_wide is live_images without them (same columns, indexes, rules
// on country and image_url, fillfactor), where the rest of a row stays. A claim takes a worker's rows
// in proto_queue, in id order, locked as it walks (SKIP LOCKED: it never waits), per country, stage, store
// host and priority (new rows first, then reworks), after the worker's cursor as ClaimCursor does, marks them
// locked (a HOT update of a narrow row) and returns what claimChunk returns, the wide columns read from
// proto_wide. A finish moves the worker's rows of proto_queue on (stage, state, unlocked, attempts and retry
// time reset), taking them in id order, writes the patch and the resets finishRows writes (live_data on
// reaching live, the error columns, updated_at) to proto_wide, and wakes the next stage, in one statement. A proto_wide row is written only by the holder of its proto_queue row's lock, so the lock order
// stays: queue rows in id order, the only locks anyone waits for.
//
// What lists claimable rows: a partial index of proto_queue (country, stage, store_host, priority, id)
// WHERE state = 'waiting', not a side table. A claim's update (the lock columns) leaves it alone (HOT); a
// finish changes stage, so the row gets a new entry and the old one is dead until vacuum. The claim walks
// from the worker's cursor, past its own dead entries, as ClaimCursor does on claimable_rows.
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../../src/db/connect.ts';
import { runPrepared } from '../../src/db/prepared-query.ts';
import type { ClaimedRow } from '../../src/queue/claim-chunk.ts';
import { compareIds } from '../../src/queue/claim-chunk.ts';
import type { FinishedRow } from '../../src/queue/finish-rows.ts';
import { PATCH_COLUMN_TYPES, patchedColumns } from '../../src/queue/row-patch.ts';
import { nextStage, type WorkStage } from '../../src/queue/stages.ts';

/** Columns of live_images that move to proto_queue (id and country stay in both). */
const QUEUE_ONLY = ['stage', 'state', 'store_host', 'locked_by', 'locked_at', 'next_attempt_at', 'attempts'];
/**
 * With `status: 'queue'`, also these: what every transition writes (finishRows resets them, failRows sets
 * them), so that a finish with no patch writes no wide row. The issue's list leaves them in the wide row.
 */
const STATUS = ['updated_at', 'last_error', 'last_error_class', 'same_error_count', 'streak_class'];

export interface NarrowOptions {
  /** Room on proto_queue's pages for the claim's HOT update; default 50. */
  queueFillfactor?: number;
  /** Where updated_at and the error columns live: 'wide' (the issue's list, default) or 'queue'. */
  status?: 'wide' | 'queue';
}

/**
 * Makes proto_wide and proto_queue in the bench database, `rows` rows of country 'uk' waiting for download,
 * as the bench fills live_images. `queueFillfactor`: room on proto_queue's pages for the claim's HOT update.
 */
export async function fillNarrowQueue(db: Db, rows: number, options: NarrowOptions = {}): Promise<void> {
  const moved = options.status === 'queue' ? [...QUEUE_ONLY, ...STATUS] : QUEUE_ONLY;
  const { rows: reloptions } = await sql<{ fillfactor: string | null }>`
    SELECT (SELECT split_part(o, '=', 2) FROM unnest(reloptions) o WHERE o LIKE 'fillfactor=%') AS fillfactor
      FROM pg_class WHERE oid = 'live_images'::regclass`.execute(db);
  const wideFillfactor = Number(reloptions[0]?.fillfactor ?? 100);
  // LIKE copies columns, defaults, identity, the generated image_hash, CHECKs and indexes, not triggers.
  await sql`CREATE TABLE proto_wide (LIKE live_images INCLUDING ALL) WITH (fillfactor = ${sql.lit(wideFillfactor)})`.execute(db);
  await sql`ALTER TABLE proto_wide ${sql.join(
    moved.map((c) => sql`DROP COLUMN ${sql.ref(c)}`),
    sql`, `,
  )}`.execute(db);
  // The rules on country and image_url, as live_images keeps them: CHECKs (copied above) or the trigger.
  const { rows: triggers } = await sql<{ tgname: string }>`
    SELECT tgname FROM pg_trigger WHERE tgrelid = 'live_images'::regclass AND tgname = 'live_images_country_url_check'`.execute(db);
  if (triggers.length)
    await sql`CREATE TRIGGER proto_wide_country_url_check AFTER INSERT OR UPDATE OF country, image_url ON proto_wide
                FOR EACH ROW WHEN (lis_country_ok(NEW.country) IS FALSE OR lis_image_url_ok(NEW.image_url) IS FALSE)
                EXECUTE FUNCTION lis_refuse_bad_image_row()`.execute(db);
  await sql`
    CREATE TABLE proto_queue (
      id              bigint PRIMARY KEY,
      country         text NOT NULL,
      stage           text NOT NULL DEFAULT 'download' CHECK (stage IN ('download', 'thumbnail', 'push', 'live')),
      state           text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'failed', 'parked', 'done')),
      store_host      text NOT NULL DEFAULT '',
      priority        smallint NOT NULL DEFAULT 0,
      locked_by       text,
      locked_at       timestamptz,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      attempts        integer NOT NULL DEFAULT 0,
      ${
        options.status === 'queue'
          ? sql`updated_at timestamptz NOT NULL DEFAULT now(), last_error text, last_error_class text,
                same_error_count integer NOT NULL DEFAULT 0, streak_class text,`
          : sql``
      }
      CONSTRAINT proto_queue_lock_pair CHECK ((locked_by IS NULL) = (locked_at IS NULL))
    ) WITH (fillfactor = ${sql.lit(options.queueFillfactor ?? 50)})`.execute(db);
  await sql`CREATE INDEX proto_queue_claim ON proto_queue (country, stage, store_host, priority, id) WHERE state = 'waiting'`.execute(db);
  for (let from = 1; from <= rows; from += 1_000_000) {
    const to = Math.min(rows, from + 999_999);
    await sql`INSERT INTO proto_wide (country, datasource_id, image_url)
              SELECT 'uk', 1, 'http://images.example.com/uk/' || g || '.jpg' FROM generate_series(${from}::int, ${to}::int) g`.execute(db);
  }
  await sql`INSERT INTO proto_queue (id, country) SELECT id, country FROM proto_wide`.execute(db);
  await sql`VACUUM ANALYZE proto_wide`.execute(db);
  await sql`VACUUM ANALYZE proto_queue`.execute(db);
}

export interface NarrowClaim {
  country: string;
  stage: WorkStage;
  workerId: string;
  storeHost: string;
}

/**
 * Claims up to `limit` rows after the cursor's ids (new rows, then reworks), as ClaimCursor + claimChunk:
 * rows sorted new first, then by id; when fewer than `limit` are left ahead, the cursor wraps to the start.
 */
export class NarrowCursor {
  private after: [string, string] = ['0', '0'];

  constructor(
    private readonly db: Db,
    private readonly request: NarrowClaim,
  ) {}

  async next(limit: number): Promise<ClaimedRow[]> {
    const ahead = await this.claim(limit, this.after);
    const wrapped = ahead.length < limit && (this.after[0] !== '0' || this.after[1] !== '0');
    const more = wrapped ? await this.claim(limit - ahead.length, ['0', '0']) : [];
    // After a wrap each cursor follows the wrapped part, so the tail is not rescanned (as ClaimCursor).
    const last = (p: number) => lastOf(more, p) ?? lastOf(ahead, p) ?? (ahead.length + more.length < limit ? '0' : this.after[p]);
    this.after = [last(0), last(1)];
    return ahead.concat(more).sort((a, b) => a.priority - b.priority || compareIds(a.id, b.id));
  }

  private async claim(limit: number, after: [string, string]): Promise<ClaimedRow[]> {
    const { country, stage, storeHost, workerId } = this.request;
    const pick = (priority: number, afterId: string, max: RawBuilder<unknown>) => sql`
      SELECT q.id FROM proto_queue q
       WHERE q.country = ${country} AND q.stage = ${stage} AND q.store_host = ${storeHost} AND q.priority = ${sql.lit(priority)}
         AND q.id > ${afterId}::bigint AND q.state = 'waiting' AND q.locked_by IS NULL AND q.next_attempt_at <= now()
       ORDER BY q.id
       LIMIT ${max}
         FOR NO KEY UPDATE SKIP LOCKED`;
    return runPrepared(
      this.db,
      sql<ClaimedRow>`
      WITH new_rows AS MATERIALIZED (${pick(0, after[0], sql`${limit}::int`)}),
           reworks AS MATERIALIZED (${pick(1, after[1], sql`(${limit}::int - (SELECT count(*) FROM new_rows))`)}),
           claimed AS (
             UPDATE proto_queue q SET locked_by = ${workerId}, locked_at = now()
              WHERE q.id = ANY(ARRAY(SELECT id FROM new_rows UNION ALL SELECT id FROM reworks))
             RETURNING q.id, q.attempts, q.store_host, q.priority)
      SELECT c.id, w.country, w.image_url, w.image_hash, w.datasource_id, w.image_data, w.human_classified, w.image_class,
             c.attempts, c.store_host, c.priority
        FROM proto_wide w JOIN claimed c ON c.id = w.id
       WHERE w.id = ANY(ARRAY(SELECT id FROM claimed))`,
    );
  }
}

/**
 * Moves rows the worker holds to the next stage, unlocked, and writes their patch and finishRows' resets to
 * proto_wide, in one statement; wakes the next stage. Returns how many moved. The patch is sent as finishRows
 * sends it: one typed array per patched column (the bench's download finish patches none, as for ours).
 */
export async function finishNarrow(db: Db, workerId: string, stage: WorkStage, rows: FinishedRow[], status: NarrowOptions['status'] = 'wide'): Promise<number> {
  if (rows.length === 0) return 0;
  const next = nextStage(stage);
  // In id order: the UPDATE takes the rows in the order it meets them.
  rows = [...rows].sort((a, b) => compareIds(a.id, b.id));
  const columns = patchedColumns(rows.map((r) => r.set));
  if (columns.includes('store_host') || rows.some((r) => r.toStage))
    throw new TypeError('finishNarrow: the prototype moves rows to the next stage, store_host unpatched');
  const arrays = [sql`${rows.map((r) => r.id)}::bigint[]`];
  const names = [sql`id`];
  const carried = [];
  const sets = [];
  const patchedRow = [];
  for (const column of columns) {
    arrays.push(sql`${rows.map((r) => patchValue(r.set?.[column]))}::${sql.raw(PATCH_COLUMN_TYPES[column])}[]`);
    names.push(sql.ref(column));
    arrays.push(sql`${rows.map((r) => r.set?.[column] !== undefined)}::boolean[]`);
    names.push(sql.ref(`has_${column}`));
    sets.push(sql`${sql.ref(column)} = CASE WHEN ${sql.ref(`l.has_${column}`)} THEN ${sql.ref(`l.${column}`)} ELSE ${sql.ref(`w.${column}`)} END`);
    patchedRow.push(sql.ref(`l.has_${column}`));
    carried.push(sql.ref(`v.${column}`), sql.ref(`v.has_${column}`));
  }
  const resets = sql`last_error = NULL, last_error_class = NULL, same_error_count = 0, streak_class = NULL, updated_at = now()`;
  if (next === 'live') sets.push(sql`live_data = w.image_data`);
  if (status === 'wide') sets.push(resets);
  // With the status in proto_queue, a wide row is written only when there is something to write in it.
  const wideRows = status === 'wide' || next === 'live' ? sql`true` : patchedRow.length ? sql`(${sql.join(patchedRow, sql` OR `)})` : undefined;
  const patched = wideRows
    ? sql`, patched AS (
           UPDATE proto_wide w SET ${sql.join(sets, sql`, `)}
             FROM moved AS l
            WHERE w.id = l.id AND ${wideRows}
           RETURNING w.id)`
    : sql``;
  // No lock step: the UPDATE takes the rows in id order, as the raw keyset's finish does: by walking proto_queue's
  // primary key over id = ANY(ids) (the index scan sorts the keys), or, with a patch, the sorted batch. The patch
  // comes out of that UPDATE (RETURNING), so the wide rows' UPDATE joins one row source (a prepared statement's
  // generic plan, guessing a few rows a side, joined a second one 500 x 500); it writes only the rows moved,
  // whose queue row's lock is held.
  const batch = columns.length
    ? sql`FROM unnest(${sql.join(arrays)}) AS v(${sql.join(names)}) WHERE q.id = v.id AND`
    : sql`WHERE q.id = ANY(${rows.map((r) => r.id)}::bigint[]) AND`;
  const [row] = await runPrepared(
    db,
    sql<{ moved: number }>`
    WITH moved AS (
           UPDATE proto_queue q
              SET stage = ${next}, state = ${next === 'live' ? 'done' : 'waiting'}, locked_by = NULL, locked_at = NULL,
                  attempts = 0, next_attempt_at = now(), priority = ${next === 'live' ? sql`1` : sql`q.priority`}
                  ${status === 'queue' ? sql`, ${resets}` : sql``}
             ${batch} q.locked_by = ${workerId} AND q.stage = ${stage}
           RETURNING ${sql.join([sql`q.id`, sql`q.country`, sql`q.stage`, ...carried])})
         ${patched}
    SELECT (SELECT count(*) FROM moved)::int AS moved,
           (SELECT count(pg_notify('lis_work', country || ':' || stage)) FROM (SELECT DISTINCT country, stage FROM moved WHERE stage <> 'live') s)::int AS woken`,
  );
  return row.moved;
}

/** A patch value as a pg array element, as finishRows sends it (its patchValue, not exported: src/queue is not the bench's). */
function patchValue(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  return value !== null && typeof value === 'object' ? JSON.stringify(value) : (value ?? null);
}

/** The largest id of one priority among claimed rows (RETURNING gives no order). */
function lastOf(rows: ClaimedRow[], priority: number): string | undefined {
  let last: string | undefined;
  for (const r of rows) if (r.priority === priority && (last === undefined || compareIds(r.id, last) > 0)) last = r.id;
  return last;
}
