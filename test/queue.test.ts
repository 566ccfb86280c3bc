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
import { parkBadRetryJobs } from '../src/manager/bad-retry-jobs.ts';
import { claimRow } from '../src/queue/claim-row.ts';
import { deferRows } from '../src/queue/defer-rows.ts';
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

  describe('the same-error streak (manager.sameReasonLimit)', () => {
    // Attempts to spare and no backoff: only the streak can park a row here, and each try may follow at once.
    const streakPolicy = { maxAttempts: 100, backoff: { baseSeconds: 0, maxSeconds: 0, jitter: 0 } };
    const timeout = { reason: 'timed out after 30 s', errorClass: 'timeout' };
    const refused = { reason: 'connection refused', errorClass: 'connection' };
    const storeFull = { reason: 'store /srv/originals is 97% full', errorClass: 'store_paused' };

    /** One try of the row: claimed by id as a worker would, then failed by its source or given back for our fault. */
    async function tryRow(id: string, outcome: { reason: string; errorClass: string }, ours = false): Promise<void> {
      const row = await claimRow(t.db, id, 'w', '');
      assert.ok(row, `row ${id} is claimable for the next try`);
      if (ours) assert.equal(await deferRows(t.db, 'w', [{ id, ...outcome, delaySeconds: 0 }]), 1);
      else assert.equal((await failRows(t.db, 'w', [{ id, attempts: row.attempts, ...outcome, retryable: true }], streakPolicy)).updated, 1);
    }

    async function rowState(id: string) {
      return t.db.selectFrom('live_images').select(['state', 'attempts', 'last_error', 'last_error_class']).where('id', '=', id).executeTakeFirstOrThrow();
    }

    async function oneRow(): Promise<string> {
      await insertUrls(t.db, 'uk', 1);
      return (await t.db.selectFrom('live_images').select('id').executeTakeFirstOrThrow()).id;
    }

    it('a deferral between the same source failures neither resets nor extends the streak: A, A, ours, A reaches the limit', async () => {
      const id = await oneRow();
      await tryRow(id, timeout);
      await tryRow(id, timeout);
      await tryRow(id, storeFull, true);
      // Two of the source's failures, shown as our fault for now: not parked, and the deferral added nothing.
      assert.equal((await parkBadRetryJobs(t.db, { maxAttempts: 100, sameReasonLimit: 3 })).sameReason, 0);
      assert.deepEqual(await rowState(id), { state: 'waiting', attempts: 2, last_error: storeFull.reason, last_error_class: 'store_paused' });
      await tryRow(id, timeout);
      assert.equal((await parkBadRetryJobs(t.db, { maxAttempts: 100, sameReasonLimit: 3 })).sameReason, 1);
      assert.deepEqual(await rowState(id), {
        state: 'failed',
        attempts: 3,
        last_error: `failed 3 times in a row: ${timeout.reason}`,
        last_error_class: 'timeout',
      });
    });

    it('a source failure of another class after a deferral starts a new streak: A, A, ours, B counts B once', async () => {
      const id = await oneRow();
      await tryRow(id, timeout);
      await tryRow(id, timeout);
      await tryRow(id, storeFull, true);
      await tryRow(id, refused);
      assert.equal((await parkBadRetryJobs(t.db, { maxAttempts: 100, sameReasonLimit: 3 })).sameReason, 0, 'one refusal is no streak of 3');
      await tryRow(id, refused);
      await tryRow(id, storeFull, true);
      await tryRow(id, refused);
      assert.equal((await parkBadRetryJobs(t.db, { maxAttempts: 100, sameReasonLimit: 3 })).sameReason, 1);
      assert.deepEqual(await rowState(id), {
        state: 'failed',
        attempts: 5,
        last_error: `failed 3 times in a row: ${refused.reason}`,
        last_error_class: 'connection',
      });
    });

    it('deferrals alone never park a row, however many, before or after a failure of the source', async () => {
      await insertUrls(t.db, 'uk', 2);
      const [fresh, once] = (await t.db.selectFrom('live_images').select('id').orderBy('id').execute()).map((r) => r.id);
      await tryRow(once, timeout);
      for (let i = 0; i < 4; i++) {
        await tryRow(fresh, storeFull, true);
        await tryRow(once, storeFull, true);
      }
      assert.deepEqual(await parkBadRetryJobs(t.db, { maxAttempts: 100, sameReasonLimit: 2 }), {
        outOfAttempts: 0,
        sameReason: 0,
        originalMissing: 0,
        thumbnailsMissing: 0,
      });
      assert.deepEqual(await countBy(t.db), { 'download/waiting': 2 });
      // The one source failure before them is still one: a second makes the streak of 2.
      await tryRow(once, timeout);
      assert.equal((await parkBadRetryJobs(t.db, { maxAttempts: 100, sameReasonLimit: 2 })).sameReason, 1);
      assert.equal((await rowState(once)).state, 'failed');
    });
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
