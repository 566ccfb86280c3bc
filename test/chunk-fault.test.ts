import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import type { StageWorker } from '../src/daemon/run-daemon.ts';
import { closeLogger } from '../src/log/create-logger.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';
import { runByHand } from './helpers/run-by-hand.ts';

/** What another worker's claim of the uk download rows takes now: the rows claimable at once. */
const claimNow = (t: TestDatabase) => claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'other:1:x', storeHost: '', limit: 100, afterId: '0' });

const dbNow = async (t: TestDatabase) => (await sql<{ now: Date }>`SELECT now() AS now`.execute(t.db)).rows[0].now.getTime();

describe('a chunk whose stage throws', () => {
  let t: TestDatabase;
  const cleanups = databasePerTest((db) => (t = db));

  it('gives its unreported rows back as our bug, waiting queue.oursRetrySeconds: a run by hand ends and says so', async function () {
    // The fixture starts through tsx (its stack names the TypeScript): 30 s was outrun with five test files at once on two cores.
    this.timeout(120_000);
    await insertUrls(t.db, 'uk', 22);
    await insertUrls(t.db, 'uk', 3, { prefix: 'http://images.example.com/fine/' });
    const before = await dbNow(t);
    const run = spawnTs('test/fixtures/throwing-daemon.ts', ['--country', 'uk', '--config', t.writeConfig(), '--chunk-size', '10']);
    let exited: { code: number | null } | null = null;
    void run.exited.then((e) => (exited = e));
    cleanups.push(async () => {
      if (exited === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    // Given back at once, the rows were claimed and thrown on again until stopped: the run never ended.
    await waitFor(() => exited !== null, 90_000, 'the run by hand to end by itself').catch((error: Error) => {
      throw new Error(`${error.message}:\n${run.output()}`);
    });
    const after = await dbNow(t);
    assert.equal(exited!.code, 0, run.output());

    // Three chunks (10, 10, 5: two rows thrown on and the three fine ones done): 22 wait, unlocked and uncharged.
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 22, 'thumbnail/waiting': 3 }, run.output());
    const waiting = await t.db
      .selectFrom('live_images')
      .select(['attempts', 'same_error_count', 'next_attempt_at', 'last_error', 'last_error_class'])
      .where('stage', '=', 'download')
      .execute();
    const ours = t.config.queue.oursRetrySeconds * 1000;
    for (const row of waiting) {
      assert.equal(row.attempts, 0, 'our bug costs the row no attempt');
      assert.equal(row.same_error_count, 0);
      assert.equal(row.last_error, 'the stage threw on its chunk: stage bug (fixture)');
      assert.equal(row.last_error_class, 'internal');
      const due = row.next_attempt_at.getTime();
      assert.ok(due >= before + ours && due <= after + ours, `due oursRetrySeconds after the throw: ${row.next_attempt_at.toISOString()}`);
    }
    assert.deepEqual(await claimNow(t), [], 'none is claimable before its wait is over');

    // Counted, row by row, toward the stage's error-rate alert (worker_minutes.ours), never to the datasource.
    const { rows: minutes } = await sql<{ done: string; failed: string; ours: string }>`
      SELECT sum(done) AS done, sum(failed) AS failed, sum(ours) AS ours FROM worker_minutes`.execute(t.db);
    assert.deepEqual(minutes[0], { done: '3', failed: '0', ours: '22' });

    const lines = run.output().trimEnd().split('\n');
    assert.match(lines.at(-1)!, /Exiting\(time_to_die: 0\)$/);
    assert.match(
      lines.at(-2)!,
      / WARN Test::get_chunk_of_work\[\d+\]:UK No rows gained\. No work to do\. 22 rows wait for a retry (until|from) (?:[A-Z][a-z]{2} \d{2} )?\d{2}:\d{2}:\d{2}.* \(internal: the stage threw on its chunk: stage bug \(fixture\)\); run again then, or start the service\.$/,
    );
    assert.match(
      run.output(),
      /ERROR Test::process_chunk\[\d+\]:UK Chunk failed: stage bug \(fixture\); its 10 unreported rows wait queue\.oursRetrySeconds, uncharged \(internal\)$/m,
    );
    // A bug's stack, below its line and indented, naming the file and line that threw (before: the message alone).
    assert.match(
      run.output(),
      /Chunk failed: stage bug \(fixture\);[^\n]*\n {4}Error: stage bug \(fixture\)\n {4}at \S+ \([^()]*test\/fixtures\/throwing-daemon\.ts:\d+:\d+\)\n/,
    );
    assert.doesNotMatch(run.output(), /Gave back \d+ unprocessed rows/);
  });

  it('a stop during a chunk still gives its unreported rows back at once, though the stage then throws', async () => {
    await insertUrls(t.db, 'uk', 10);
    const { log, lines } = capturedLogger('testd', t.config.log);
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      processChunk(rows, ctx) {
        ctx.report({ ok: true, row: { id: rows[0].id } });
        // SIGTERM mid-chunk; the stage then throws what an aborted read throws: the stop's own error, not a bug.
        stop.abort();
        assert.ok(ctx.signal.aborted, 'the chunk is told at once');
        return Promise.reject(ctx.signal.reason as Error);
      },
    };
    await runByHand(stage, t, log, { signal: stop.signal });
    assert.ok(lines.includes('INFO Gave back 9 unprocessed rows'), lines.join('\n'));
    const next = await claimNow(t);
    assert.equal(next.length, 9, 'claimable by the next worker at once');
    assert.ok(
      next.every((r) => r.attempts === 0),
      'uncharged',
    );
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE last_error IS NOT NULL`.execute(t.db);
    assert.equal(rows[0].n, '0', 'no fault recorded for a stop');
  });

  it("a chunk whose stage meets a database outage gives its rows back as the database's fault, not a bug", async () => {
    await insertUrls(t.db, 'uk', 6);
    const { log, lines } = capturedLogger('testd', t.config.log);
    cleanups.push(() => closeLogger(log));
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      async processChunk() {
        // A real server ending the stage's session under a query, as a restart does (57P01, then the socket closes).
        const client = new pg.Client({ connectionString: t.url });
        client.on('error', () => {});
        await client.connect();
        try {
          await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
        } finally {
          await client.end().catch(() => {});
        }
      },
    };
    // Run by hand: it ends once no row is left to claim (the six wait out queue.oursRetrySeconds).
    await runByHand(stage, t, log);
    const waiting = await t.db.selectFrom('live_images').select(['attempts', 'last_error', 'last_error_class', 'locked_by']).execute();
    assert.equal(waiting.length, 6);
    for (const row of waiting) {
      assert.equal(row.last_error_class, 'database', `an outage, not a bug: ${row.last_error}`);
      assert.match(row.last_error!, /^the stage threw on its chunk: terminating connection due to administrator command/);
      assert.equal(row.attempts, 0, 'uncharged');
      assert.equal(row.locked_by, null);
    }
    assert.ok(
      lines.some((l) =>
        /^ERROR Chunk failed: terminating connection due to administrator command; its 6 unreported rows wait queue\.oursRetrySeconds, uncharged \(database\)$/.test(
          l,
        ),
      ),
      lines.join('\n'),
    );
    // Not counted toward the stage's error-rate alert (a bug's): the database's own alerts tell of an outage.
    const { rows: minutes } = await sql<{ ours: string | null }>`SELECT sum(ours) AS ours FROM worker_minutes`.execute(t.db);
    assert.ok(minutes[0].ours === null || minutes[0].ours === '0', `ours counted: ${minutes[0].ours}`);
  });
});
