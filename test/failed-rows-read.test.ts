// What reads only the failed rows reads them through live_images_failed, not the whole table: bad_retry_jobs
// and missed_origin_rows every 5 min, `lis retry` and its list of reasons. At 2.5M rows each such read took
// 3.5 s (bad_retry_jobs 11 s a run); what they find must stay the same.
import assert from 'node:assert/strict';
import { sql, type RawBuilder } from 'kysely';
import { originalMissingRows, parkBadRetryJobs, thumbnailsMissingRows } from '../src/manager/bad-retry-jobs.ts';
import { failedReasonCounts } from '../src/queue/failed-reasons.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('reads of the failed rows', () => {
  let t: TestDatabase;
  before(async () => (t = await createTestDatabase()));
  after(() => t.drop());

  /** Whether the planner can take live_images_failed (seq scans priced out): robust whatever the table's size. */
  async function plan(where: RawBuilder<unknown>): Promise<string> {
    return t.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      const { rows } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN SELECT li.id FROM live_images li WHERE ${where}`.execute(trx);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
  }

  it("bad_retry_jobs's send-backs and lis retry's reasons use the failed rows' index, and find the same rows", async () => {
    await insertUrls(t.db, 'uk', 8);
    await sql`UPDATE live_images SET stage = 'push', state = CASE WHEN id % 2 = 0 THEN 'failed' ELSE 'waiting' END,
                     last_error = 'gone', last_error_class = 'thumbnail_missing' WHERE id <= 4`.execute(t.db);
    await sql`UPDATE live_images SET stage = 'thumbnail', state = 'failed', last_error = 'lost', last_error_class = 'original_missing' WHERE id = 5`.execute(
      t.db,
    );
    await sql`UPDATE live_images SET state = 'failed', last_error = 'HTTP 404', last_error_class = 'http_404' WHERE id = 6`.execute(t.db);
    // Most of a country's rows are live, as in production: then an index on country alone does not pick them.
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state)
              SELECT 'uk', 1, 'http://live.example.com/' || g || '.jpg', 'live', 'done' FROM generate_series(1, 3000) g`.execute(t.db);
    await sql`ANALYZE live_images`.execute(t.db);

    for (const where of [thumbnailsMissingRows('uk'), thumbnailsMissingRows(), originalMissingRows('uk'), originalMissingRows()]) {
      const p = await plan(where);
      assert.match(p, /live_images_failed/, p);
    }
    const reasons = await plan(sql`li.state = 'failed' AND li.country = 'uk'`);
    assert.match(reasons, /live_images_failed/, reasons);

    assert.deepEqual(await failedReasonCounts(t.db, { country: 'uk' }), [
      { reason: 'thumbnail_missing', rows: 2 },
      { reason: 'http_404', rows: 1 },
      { reason: 'original_missing', rows: 1 },
    ]);
    const result = await parkBadRetryJobs(t.db, { maxAttempts: 6, sameReasonLimit: 4, country: 'uk' });
    assert.deepEqual(result, { outOfAttempts: 0, sameReason: 0, originalMissing: 1, thumbnailsMissing: 4 });
    assert.deepEqual(await countBy(t.db), { 'download/failed': 1, 'download/waiting': 3, 'live/done': 3000, 'thumbnail/waiting': 4 });
  });
});
