// claimable_rows, the list claims read: every claimable row of live_images must be on it, whatever moved the row.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/connect.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { retryFailed } from '../src/manager/bad-retry-jobs.ts';
import { disableDatasource, enableDatasource } from '../src/manager/datasource-switch.ts';
import { runCheck } from '../src/manager/run-check.ts';
import { releaseStuckJobs } from '../src/manager/stuck-jobs.ts';
import { refreshDueRows } from '../src/cli/refresh-command.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { UNLISTED_LOCK } from '../src/queue/claimable-rows.ts';
import { failRows } from '../src/queue/fail-rows.ts';
import { finishRows } from '../src/queue/finish-rows.ts';
import { releaseRows } from '../src/queue/release-rows.ts';
import { reworkRows } from '../src/queue/rework-rows.ts';
import { raceWhileHeld } from './helpers/forced-race.ts';
import { insertUrls, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { serverUpFor } from './helpers/server-uptime.ts';

const policy = { maxAttempts: 3, backoff: { baseSeconds: 60, maxSeconds: 3600, jitter: 0.25 } };

/** The claimable rows of live_images and the entries of claimable_rows, each as sorted `id stage host due` lines. */
async function listing(db: Db): Promise<{ claimable: string[]; listed: string[] }> {
  const line = sql`id || ' ' || country || ' ' || stage || ' ' || store_host || ' ' || extract(epoch FROM next_attempt_at)`;
  const { rows } = await sql<{ claimable: string[] | null; listed: string[] | null }>`
    SELECT (SELECT array_agg(${line} ORDER BY id) FROM live_images WHERE state = 'waiting' AND locked_by IS NULL AND stage <> 'live') AS claimable,
           (SELECT array_agg(${line} ORDER BY id) FROM claimable_rows) AS listed`.execute(db);
  return { claimable: rows[0].claimable ?? [], listed: rows[0].listed ?? [] };
}

async function assertListed(db: Db, after: string, expectedClaimable?: number): Promise<void> {
  const { claimable, listed } = await listing(db);
  assert.deepEqual(listed, claimable, `after ${after}, claimable_rows lists exactly the claimable rows`);
  if (expectedClaimable !== undefined) assert.equal(claimable.length, expectedClaimable, `after ${after}`);
}

const claim = (db: Db, workerId: string, limit: number, stage: 'download' | 'thumbnail' = 'download') =>
  claimChunk(db, { country: 'uk', stage, workerId, storeHost: '', limit, afterId: '0' });

describe('claimable_rows', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('lists every claimable row, whichever path moved it', async () => {
    await disableDatasource(t.db, 'uk', 2, 'test');
    await insertUrls(t.db, 'uk', 30);
    await insertUrls(t.db, 'uk', 5, { datasourceId: 2, prefix: 'http://other.example.com/' });
    await assertListed(t.db, 'the ETL inserted rows (those of a disabled datasource parked)', 30);

    const held = await claim(t.db, 'w', 10);
    assert.equal(held.length, 10);
    await assertListed(t.db, 'a claim', 20);

    const [done, retrying, failing, released] = [held.slice(0, 4), held.slice(4, 7), held.slice(7, 8), held.slice(8)];
    assert.equal(
      await finishRows(
        t.db,
        'w',
        'download',
        done.map((r) => ({ id: r.id })),
      ),
      4,
    );
    const failed = await failRows(
      t.db,
      'w',
      [
        ...retrying.map((r) => ({ id: r.id, attempts: 0, reason: 'HTTP 503', errorClass: 'http_5xx', retryable: true })),
        ...failing.map((r) => ({ id: r.id, attempts: 0, reason: 'HTTP 404', errorClass: 'http_404', retryable: false })),
      ],
      policy,
    );
    assert.deepEqual(failed, { updated: 4, failed: 1, retrying: 3 });
    assert.equal(
      await releaseRows(
        t.db,
        'w',
        released.map((r) => r.id),
      ),
      2,
    );
    await assertListed(t.db, 'finish (next stage), fail (retry later; failed for good) and release', 29);
    assert.equal((await claim(t.db, 'w', 10, 'thumbnail')).length, 4, 'finished rows are claimable in the next stage');
    assert.ok(
      (await claim(t.db, 'w', 50)).every((r) => !retrying.some((x) => x.id === r.id)),
      'a row waiting out its backoff is not claimed',
    );
    await releaseRows(
      t.db,
      'w',
      (await t.db.selectFrom('live_images').select('id').where('locked_by', '=', 'w').execute()).map((r) => r.id),
    );
    await assertListed(t.db, 'releasing everything');

    assert.equal(await retryFailed(t.db, { country: 'uk' }), 1);
    assert.equal(await enableDatasource(t.db, 'uk', 2), 5);
    await assertListed(t.db, '`lis retry` and re-enabling a datasource', 35);

    // Set-up by hand (no trigger sees it any more, so the list is rebuilt): a third of the rows live.
    await sql`UPDATE live_images SET stage = 'live', state = 'done', downloaded_at = now() - interval '40 days', image_data = '{"presets":{}}', live_data = '{"presets":{}}'
               WHERE id % 3 = 0`.execute(t.db);
    await relistAll(t.db);
    await sql`UPDATE live_images SET last_seen = now()`.execute(t.db);
    await assertListed(t.db, 'the ETL seeing every URL again (last_seen only)');
    assert.ok((await refreshDueRows(t.db, { country: 'uk', olderThanDays: 0, limit: 4 })) > 0);
    await assertListed(t.db, '`lis refresh`');
    assert.ok((await reworkRows(t.db, 'thumbnail', { country: 'uk' })) > 0);
    await assertListed(t.db, '`lis rethumbnail`');
    await disableDatasource(t.db, 'uk', 1, 'test');
    await assertListed(t.db, 'disabling a datasource (park)');
    await enableDatasource(t.db, 'uk', 1);
    await assertListed(t.db, 're-enabling it (unpark)');
    const { rows: priorities } = await sql<{
      priority: number;
      n: number;
    }>`SELECT priority, count(*)::int AS n FROM claimable_rows GROUP BY 1 ORDER BY 1`.execute(t.db);
    assert.deepEqual(
      priorities.map((p) => p.priority),
      [0, 1],
      'reworks are listed with priority 1, new rows with 0',
    );

    // A worker dies holding rows; the manager releases them.
    await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at) VALUES ('dead:1', 'downloadd', 'dead', 1, now() - interval '1 hour')`.execute(t.db);
    assert.equal((await claim(t.db, 'dead:1', 6)).length, 6);
    await serverUpFor(t.db, 2);
    const [released1] = await releaseStuckJobs(t.db, 2);
    assert.equal(released1.rows, 6);
    await assertListed(t.db, "the manager released a dead worker's rows");
  });

  it("the manager's alarm lists again rows an UPDATE by hand (outside src/queue) unlocked", async () => {
    await insertUrls(t.db, 'uk', 10);
    assert.equal((await claim(t.db, 'w', 3)).length, 3);
    await sql`UPDATE live_images SET locked_by = NULL, locked_at = NULL WHERE locked_by = 'w'`.execute(t.db);
    const { claimable, listed } = await listing(t.db);
    assert.equal(claimable.length - listed.length, 3, 'the three are claimable but unlisted');
    assert.equal((await claim(t.db, 'w2', 10)).length, 7, 'so claims miss them');
    const log = createLogger({ component: 'managerd', log: t.config.log, screen: false, files: false });
    try {
      assert.equal(
        await runCheck('unlisted_rows', { config: t.config, db: t.db, log, country: 'uk' }),
        'unlisted_rows: 3 claimable rows had no claim entry and were listed again',
      );
      assert.equal(
        await runCheck('unlisted_rows', { config: t.config, db: t.db, log, country: 'uk' }),
        'unlisted_rows: 0 claimable rows had no claim entry and were listed again',
      );
    } finally {
      await closeLogger(log);
    }
    await assertListed(t.db, 'the unlisted_rows check', 3);
    assert.equal((await claim(t.db, 'w2', 10)).length, 3);
    const events = await t.db.selectFrom('manager_events').select(['check_name', 'rows']).execute();
    assert.deepEqual(events, [{ check_name: 'unlisted_rows', rows: 3 }]);
  });

  it('two managers running the alarm at once list the rows once, and only one of them says so', async () => {
    await insertUrls(t.db, 'uk', 10);
    assert.equal((await claim(t.db, 'w', 4)).length, 4);
    await sql`UPDATE live_images SET locked_by = NULL, locked_at = NULL WHERE locked_by = 'w'`.execute(t.db);
    const managers = [createDb(t.url, 1), createDb(t.url, 1)];
    const log = createLogger({ component: 'managerd', log: t.config.log, screen: false, files: false });
    try {
      // Both started while the listers' lock is held: both wait for it, so neither has listed when the other reads.
      const summaries = await raceWhileHeld(
        t,
        sql`SELECT pg_advisory_xact_lock(${UNLISTED_LOCK})`,
        () => Promise.all(managers.map((db) => runCheck('unlisted_rows', { config: t.config, db, log, country: 'uk' }))),
        2,
        'both managers waiting to list',
      );
      assert.deepEqual([...summaries].sort(), [
        'unlisted_rows: 0 claimable rows had no claim entry and were listed again',
        'unlisted_rows: 4 claimable rows had no claim entry and were listed again',
      ]);
    } finally {
      await closeLogger(log);
      await Promise.all(managers.map((db) => db.destroy()));
    }
    await assertListed(t.db, 'two unlisted_rows checks at once', 10);
    const events = await t.db.selectFrom('manager_events').select(['check_name', 'rows']).execute();
    assert.deepEqual(events, [{ check_name: 'unlisted_rows', rows: 4 }], 'one alarm');
  });

  it('a claim drops entries whose row is gone or moved on, and still fills its chunk', async () => {
    await insertUrls(t.db, 'uk', 30);
    const ids = (await t.db.selectFrom('live_images').select('id').orderBy('id').execute()).map((r) => r.id);
    await sql`DELETE FROM live_images WHERE id = ANY(${ids.slice(0, 8)}::bigint[])`.execute(t.db);
    // An entry left behind for a row already in the next stage (say, by a hand-run INSERT).
    await sql`UPDATE live_images SET stage = 'thumbnail' WHERE id = ${ids[8]}`.execute(t.db);
    await sql`INSERT INTO claimable_rows (id, country, stage, store_host, next_attempt_at) VALUES (${ids[8]}, 'uk', 'download', '', now()), (${ids[8]}, 'uk', 'thumbnail', '', now())`.execute(
      t.db,
    );
    const got = await claim(t.db, 'w', 10);
    assert.deepEqual(
      got.map((r) => r.id),
      ids.slice(9, 19),
      'ten live rows, past the nine stale entries',
    );
    const { rows: stale } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM claimable_rows WHERE stage = 'download' AND id <= ${ids[8]}`.execute(t.db);
    assert.equal(stale[0].n, 0, 'the stale entries are gone');
    assert.equal((await claim(t.db, 'w', 10, 'thumbnail')).map((r) => r.id).join(), ids[8], 'the moved row is still claimable in its stage');
  });

  it('a claim and a stage move are HOT updates: no index of live_images is written', async () => {
    await insertUrls(t.db, 'uk', 500);
    await sql`VACUUM live_images`.execute(t.db);
    await t.db.transaction().execute(async (trx) => {
      const rows = await claimChunk(trx, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 500, afterId: '0' });
      assert.equal(
        await finishRows(
          trx,
          'w',
          'download',
          rows.map((r) => ({ id: r.id, set: { store_host: 'hostA', content_hash: 'x'.repeat(64) } })),
        ),
        500,
      );
      const {
        rows: [counts],
      } = await sql<{ updated: number; hot: number }>`
        SELECT pg_stat_get_xact_tuples_updated('live_images'::regclass)::int AS updated,
               pg_stat_get_xact_tuples_hot_updated('live_images'::regclass)::int AS hot`.execute(trx);
      assert.deepEqual(counts, { updated: 1000, hot: 1000 });
    });
  });
});
