import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createDb } from '../src/db/connect.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { backoffSeconds, retryDelaySeconds } from '../src/queue/backoff.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { ClaimCursor } from '../src/queue/claim-cursor.ts';
import { decideFailures, failRows } from '../src/queue/fail-rows.ts';
import { finishRows } from '../src/queue/finish-rows.ts';
import { releaseRows } from '../src/queue/release-rows.ts';
import { claimHostFor, runDaemon, type StageWorker } from '../src/daemon/run-daemon.ts';
import { countBy, insertUrls, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const policy = { maxAttempts: 3, backoff: { baseSeconds: 60, maxSeconds: 3600, jitter: 0.25 } };

describe('queue', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('eight concurrent workers drain 20,000 rows, each row processed exactly once', async function () {
    this.timeout(120_000);
    await insertUrls(t.db, 'uk', 20_000);
    const seen = new Map<string, string>();
    let duplicates = 0;
    const log = createLogger({ component: 'test', log: t.config.log, screen: false, files: false });
    const workers = Array.from({ length: 8 }, (_, i) => {
      // Each worker on its own connections, as separate processes would be.
      const db = createDb(t.url, 2);
      const worker: StageWorker = {
        component: 'testd',
        scope: 'Test',
        stage: 'download',
        async processChunk(rows, ctx) {
          for (const row of rows) {
            if (seen.has(row.id)) duplicates++;
            seen.set(row.id, `w${i}`);
            ctx.report({ ok: true, row: { id: row.id, set: { store_host: 'testhost' } } });
          }
          await new Promise((resolve) => setImmediate(resolve));
        },
      };
      return runDaemon(worker, {
        config: t.config,
        db,
        databaseUrl: t.url,
        log,
        country: 'uk',
        chunkSize: 137,
        service: false,
        signal: new AbortController().signal,
        workerId: `testhost:w${i}`,
      }).finally(() => db.destroy());
    });
    const totals = await Promise.all(workers);
    await closeLogger(log);
    assert.equal(duplicates, 0);
    assert.equal(seen.size, 20_000);
    assert.equal(
      totals.reduce((n, x) => n + x.done, 0),
      20_000,
    );
    assert.ok(new Set(seen.values()).size >= 4, 'the work was shared between the workers');
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 20_000 });
    const storeHosts = await t.db.selectFrom('live_images').select('store_host').distinct().execute();
    assert.deepEqual(storeHosts, [{ store_host: 'testhost' }]);
  });

  it('never hands a locked row to a second claim, and takes it again once released', async () => {
    await insertUrls(t.db, 'uk', 10);
    const a = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'a', storeHost: '', limit: 6, afterId: '0' });
    const b = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'b', storeHost: '', limit: 6, afterId: '0' });
    assert.equal(a.length, 6);
    assert.equal(b.length, 4);
    assert.equal(new Set([...a, ...b].map((r) => r.id)).size, 10);
    assert.equal(
      await releaseRows(
        t.db,
        'b',
        b.map((r) => r.id),
      ),
      4,
    );
    assert.equal(
      await releaseRows(
        t.db,
        'b',
        a.map((r) => r.id),
      ),
      0,
      'a worker cannot release what it does not hold',
    );
    const c = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'c', storeHost: '', limit: 10, afterId: '0' });
    assert.deepEqual(c.map((r) => r.id).sort(), b.map((r) => r.id).sort());
  });

  it('claims only its country and stage, and later stages only from its own store', async () => {
    await insertUrls(t.db, 'uk', 5);
    await insertUrls(t.db, 'fr', 5);
    await sql`UPDATE live_images SET stage = 'thumbnail', store_host = CASE WHEN id % 2 = 0 THEN 'hostA' ELSE 'hostB' END WHERE country = 'uk'`.execute(t.db);
    await relistAll(t.db);
    const fr = await claimChunk(t.db, { country: 'fr', stage: 'download', workerId: 'w', storeHost: '', limit: 50, afterId: '0' });
    assert.equal(fr.length, 5);
    assert.ok(fr.every((r) => r.country === 'fr'));
    const thumbs = await claimChunk(t.db, { country: 'uk', stage: 'thumbnail', workerId: 'w', storeHost: 'hostA', limit: 50, afterId: '0' });
    assert.ok(thumbs.length > 0 && thumbs.every((r) => r.store_host === 'hostA'));
    assert.equal(claimHostFor('download', { ...t.config, host: 'hostA' }), '');
    assert.equal(claimHostFor('thumbnail', { ...t.config, host: 'hostA' }), 'hostA');
    assert.equal(claimHostFor('thumbnail', { ...t.config, host: 'hostA', stores: { ...t.config.stores, shared: true } }), '');
  });

  it('a cursor resumes after its last row and wraps round for rows whose retry time came', async () => {
    await insertUrls(t.db, 'uk', 30);
    const cursor = new ClaimCursor(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '' });
    const first = await cursor.next(10);
    // The first chunk fails and comes back at once (its retry is due now).
    assert.equal(
      await releaseRows(
        t.db,
        'w',
        first.map((r) => r.id),
      ),
      10,
    );
    const second = await cursor.next(10);
    assert.ok(Number(second[0].id) > Number(first[9].id), 'resumes after its last row');
    const third = await cursor.next(15);
    assert.equal(third.length, 15, 'ten ahead of the cursor, then five from the start');
    assert.deepEqual(
      third.slice(10).map((r) => r.id),
      first.slice(0, 5).map((r) => r.id),
    );
  });

  it("finishing a batch writes each row's own patch: a column some rows leave out keeps its value there, null is written as null", async () => {
    await insertUrls(t.db, 'uk', 2);
    await sql`UPDATE live_images SET etag = 'old', image_data = '{"width": 1}'`.execute(t.db);
    const [a, b] = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(
      await finishRows(t.db, 'w', 'download', [
        { id: a.id, set: { etag: null, store_host: 'hostA', original_bytes: 1234, downloaded_at: '2026-01-02T03:04:05.000Z' } },
        {
          id: b.id,
          set: { image_data: { width: 2, presets: { small: { files: ['x.jpg'] } } }, store_host: 'hostB', perceptual_hash: '-9223372036854775808' },
          toStage: 'live',
        },
      ]),
      2,
    );
    const after = await t.db
      .selectFrom('live_images')
      .select([
        'stage',
        'state',
        'etag',
        'store_host',
        'image_data',
        'original_bytes',
        'perceptual_hash',
        sql<string>`to_char(downloaded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')`.as('downloaded'),
      ])
      .orderBy('id')
      .execute();
    assert.deepEqual(after, [
      {
        stage: 'thumbnail',
        state: 'waiting',
        etag: null,
        store_host: 'hostA',
        image_data: { width: 1 },
        original_bytes: 1234,
        perceptual_hash: null,
        downloaded: '2026-01-02 03:04:05',
      },
      {
        stage: 'live',
        state: 'done',
        etag: 'old',
        store_host: 'hostB',
        image_data: { width: 2, presets: { small: { files: ['x.jpg'] } } },
        original_bytes: null,
        perceptual_hash: '-9223372036854775808',
        downloaded: null,
      },
    ]);
  });

  it("finishing moves held rows on and leaves a person's classification alone", async () => {
    await insertUrls(t.db, 'uk', 2);
    await sql`UPDATE live_images SET human_classified = true, image_class = 'floorplan' WHERE id = (SELECT min(id) FROM live_images)`.execute(t.db);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(
      await finishRows(
        t.db,
        'other',
        'download',
        rows.map((r) => ({ id: r.id })),
      ),
      0,
      'not by a worker that does not hold them',
    );
    assert.equal(
      await finishRows(
        t.db,
        'w',
        'download',
        rows.map((r) => ({ id: r.id, set: { image_class: 'photo', image_data: { width: 10 } } })),
      ),
      2,
    );
    const after = await t.db.selectFrom('live_images').select(['stage', 'image_class', 'image_data', 'locked_by']).orderBy('id').execute();
    assert.deepEqual(after, [
      { stage: 'thumbnail', image_class: 'floorplan', image_data: { width: 10 }, locked_by: null },
      { stage: 'thumbnail', image_class: 'photo', image_data: { width: 10 }, locked_by: null },
    ]);
  });

  it('finishing can send a row to a stage other than the next (an unchanged refresh goes back to live)', async () => {
    await insertUrls(t.db, 'uk', 2);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(await finishRows(t.db, 'w', 'download', [{ id: rows[0].id, toStage: 'live' }, { id: rows[1].id }]), 2);
    assert.deepEqual(await countBy(t.db), { 'live/done': 1, 'thumbnail/waiting': 1 });
  });

  it('retries transient failures with backoff and fails permanent ones with the reason', async () => {
    await insertUrls(t.db, 'uk', 3);
    let rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    const [a, b, c] = rows;
    const result = await failRows(
      t.db,
      'w',
      [
        { id: a.id, attempts: a.attempts, reason: 'HTTP 503 Service Unavailable', errorClass: 'http_5xx', retryable: true },
        { id: b.id, attempts: b.attempts, reason: 'HTTP 404 Not Found', errorClass: 'http_404', retryable: false },
        { id: c.id, attempts: c.attempts, reason: 'HTTP 429', errorClass: 'http_429', retryable: true, retryAfterSeconds: 7200 },
      ],
      policy,
    );
    assert.deepEqual(result, { updated: 3, failed: 1, retrying: 2 });
    const { rows: states } = await sql<{
      id: string;
      state: string;
      attempts: number;
      wait: number;
      last_error: string;
      last_error_class: string;
      locked_by: string | null;
    }>`
      SELECT id, state, attempts, extract(epoch FROM next_attempt_at - now())::float8 AS wait, last_error, last_error_class, locked_by
        FROM live_images ORDER BY id`.execute(t.db);
    assert.equal(states[0].state, 'waiting');
    assert.ok(states[0].wait > 60 * 0.74 && states[0].wait <= 60, `first retry after 45-60 s, got ${states[0].wait}`);
    assert.deepEqual([states[1].state, states[1].last_error, states[1].last_error_class], ['failed', 'HTTP 404 Not Found', 'http_404']);
    assert.ok(states[2].wait > 7100, 'a Retry-After longer than our backoff wins');
    assert.ok(states.every((s) => s.attempts === 1 && s.locked_by === null));
    // Not claimable before its time.
    rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(rows.length, 0);
    // Out of attempts: the last transient failure is permanent.
    await sql`UPDATE live_images SET next_attempt_at = now(), attempts = 2 WHERE id = ${a.id}`.execute(t.db);
    await relistAll(t.db);
    rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(rows.length, 1);
    await failRows(t.db, 'w', [{ id: a.id, attempts: rows[0].attempts, reason: 'timed out', errorClass: 'timeout', retryable: true }], policy);
    const final = await t.db.selectFrom('live_images').select(['state', 'attempts', 'last_error']).where('id', '=', a.id).executeTakeFirstOrThrow();
    assert.deepEqual(final, { state: 'failed', attempts: 3, last_error: 'timed out' });
  });

  it('backoff doubles, is capped, and spreads by its jitter', () => {
    const none = () => 0;
    const all = () => 1;
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => backoffSeconds(n, policy.backoff, none)),
      [60, 120, 240, 480],
    );
    assert.equal(backoffSeconds(20, policy.backoff, none), 3600);
    assert.equal(backoffSeconds(1, policy.backoff, all), 45);
    assert.equal(retryDelaySeconds(1, policy.backoff, 10, none), 60, 'a shorter Retry-After does not hurry us');
    const outcomes = decideFailures(
      [
        { id: '1', attempts: 0, reason: 'x', errorClass: 'x', retryable: true },
        { id: '2', attempts: 2, reason: 'x', errorClass: 'x', retryable: true },
        { id: '3', attempts: 0, reason: 'x', errorClass: 'x', retryable: false },
      ],
      policy,
      none,
    );
    assert.deepEqual(
      outcomes.map((o) => o.state),
      ['waiting', 'failed', 'failed'],
    );
  });
});
