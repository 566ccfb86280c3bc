// The results writer against a real database through a relay: a flush whose COMMIT reached the server and
// whose answer was lost is known, on the retry, to have been written (not counted as rows lost).
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { closeDb, createDb, type Db } from '../src/db/connect.ts';
import { serviceQueryBounds } from '../src/db/query-bounds.ts';
import { ChunkRun } from '../src/daemon/chunk-run.ts';
import { writeResults } from '../src/daemon/result-writer.ts';
import { closeLogger, type Logger } from '../src/log/create-logger.ts';
import { claimChunk, type ClaimedRow } from '../src/queue/claim-chunk.ts';
import { commitStatus } from '../src/queue/commit-status.ts';
import type { FlushOutcome } from '../src/queue/flush-results.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { waitFor } from './helpers/processes.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** Short bounds, so that the lost answer's query fails within the test. */
const TEST_BOUNDS = { connectMs: 1000, queryMs: 1500 };

describe('the results writer', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  const cleanups: Array<() => Promise<void> | void> = [];
  beforeEach(async () => (t = await createTestDatabase()));
  const writerOptions = (db: Db, log: Logger, signal: AbortSignal) => ({
    db,
    workerId: () => 'w1',
    stage: 'download' as const,
    policy: { maxAttempts: t.config.queue.maxAttempts, backoff: t.config.queue.backoff },
    log,
    scope: 'Test::flush',
    signal,
  });
  /** A chunk of `rows`, each finished, its results not yet written; a captured log and the chunk's stop, both cleaned up. */
  const finishedChunk = (rows: ClaimedRow[]) => {
    const { log, lines } = capturedLogger('testd', t.config.log);
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const chunk = new ChunkRun(rows, Date.now(), stop.signal);
    for (const row of rows) chunk.add({ ok: true, row: { id: row.id } }, 0);
    return { log, lines, stop, chunk };
  };
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await t.drop();
  });

  it('a flush whose COMMIT the server ran and whose answer was lost: the retry learns it committed, and says the rows written, none lost', async () => {
    await insertUrls(t.db, 'uk', 10);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w1', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(rows.length, 10);
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    const db: Db = createDb(relay.url, 2, () => {}, TEST_BOUNDS);
    cleanups.push(() => closeDb(db, 1000));
    const { log, lines, stop, chunk } = finishedChunk(rows);
    const written: FlushOutcome[] = [];

    // Kysely ends a transaction with `commit`: it reaches the server, its answer never comes back. The statement's
    // text ends there (NUL-terminated in the protocol): the session settings sent at connect say `read committed`.
    const commitSent = relay.stallAfter('commit\0');
    const writing = writeResults(chunk, { ...writerOptions(db, log, stop.signal), onWritten: (outcome) => written.push(outcome) });
    await commitSent;
    relay.mend();
    await writing;

    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 10 }, 'the rows moved on once');
    assert.deepEqual(written, [{ done: 10, failed: 0, deferred: 0, lost: 0 }], 'counted as written');
    const said = lines.join('\n');
    assert.match(said, /ERROR Could not write 10 results \(try 1\): .*not answering/, 'the lost answer was said');
    assert.match(said, /INFO The earlier write of 10 results committed \(its answer was lost\)/);
    assert.doesNotMatch(said, /Lost the lock/);
  });

  it('rows deleted while held (an ETL or a person ran DELETE) are told as deleted, not as locks the manager took back', async () => {
    await insertUrls(t.db, 'uk', 4);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w1', storeHost: '', limit: 4, afterId: '0' });
    await sql`DELETE FROM live_images WHERE id IN (${rows[0].id}, ${rows[1].id})`.execute(t.db);
    // And one the manager released meanwhile, which another worker holds now.
    await sql`UPDATE live_images SET locked_by = 'w2' WHERE id = ${rows[2].id}`.execute(t.db);
    const { log, lines, stop, chunk } = finishedChunk(rows);
    const written: FlushOutcome[] = [];
    await writeResults(chunk, { ...writerOptions(t.db, log, stop.signal), onWritten: (outcome) => written.push(outcome) });
    assert.deepEqual(written, [{ done: 1, failed: 0, deferred: 0, lost: 3, deleted: 2 }]);
    const said = lines.join('\n');
    assert.match(
      said,
      /WARN 2 rows were deleted from live_images while this worker held them \(a DELETE by hand or by an ETL, not the manager\): their results were dropped/,
    );
    assert.match(said, /WARN Lost the lock on 1 rows \(released by the manager\?\)/);
  });

  it('a flush whose COMMIT failed (the server aborted it): the retry learns it did not commit, and writes the results again', async () => {
    await insertUrls(t.db, 'uk', 5);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w1', storeHost: '', limit: 5, afterId: '0' });
    // A deferred check that fails the first COMMIT after a write of live_images (a sequence counts across rollbacks), as a serialization failure would.
    await sql`CREATE SEQUENCE commit_tries`.execute(t.db);
    await sql`CREATE FUNCTION fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN
                IF nextval('commit_tries') = 1 THEN RAISE EXCEPTION 'first commit refused' USING ERRCODE = '40001'; END IF;
                RETURN NULL;
              END $$`.execute(t.db);
    await sql`CREATE CONSTRAINT TRIGGER fail_first_commit AFTER UPDATE ON live_images DEFERRABLE INITIALLY DEFERRED
              FOR EACH ROW EXECUTE FUNCTION fail_first_commit()`.execute(t.db);
    const { log, lines, stop, chunk } = finishedChunk(rows);
    const written: FlushOutcome[] = [];
    await writeResults(chunk, { ...writerOptions(t.db, log, stop.signal), onWritten: (outcome) => written.push(outcome) });
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 5 });
    assert.deepEqual(written, [{ done: 5, failed: 0, deferred: 0, lost: 0 }]);
    const said = lines.join('\n');
    assert.match(said, /ERROR Could not write 5 results \(try 1\): the commit of transaction \d+ was not confirmed: first commit refused/);
    assert.match(said, /WARN The earlier write of 5 results did not commit \(transaction \d+\): writing them again/);
  });

  it("a flush whose path went silent mid-transaction: the server ends the session at the services' bound, and the rows' locks with it", async () => {
    await insertUrls(t.db, 'uk', 10);
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w1', storeHost: '', limit: 10, afterId: '0' });
    const ids = rows.map((r) => r.id);
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    const bounds = serviceQueryBounds({ ...t.config, database: { ...t.config.database, connectTimeoutSeconds: 1, queryTimeoutSeconds: 1.5 } });
    const db: Db = createDb(relay.url, 2, () => {}, bounds);
    cleanups.push(() => closeDb(db, 1000));
    const { log, stop, chunk } = finishedChunk(rows);
    // The finish (it lists the rows for the next stage) has locked and moved the rows; its answer, and all after it, is lost.
    const finishSent = relay.stallAfter('INSERT INTO claimable_rows');
    const writing = writeResults(chunk, { ...writerOptions(db, log, stop.signal), onWritten: () => {} });
    cleanups.push(async () => {
      stop.abort();
      await writing.catch(() => {});
    });
    await finishSent;
    const locked = async () =>
      Number(
        (
          await sql<{ n: string }>`SELECT count(*) AS n FROM (SELECT id FROM live_images WHERE id = ANY(${ids}::bigint[]) FOR UPDATE SKIP LOCKED) f`.execute(
            t.db,
          )
        ).rows[0].n,
      );
    // The statement has reached the server; it takes the rows' locks as it runs.
    await waitFor(async () => (await locked()) === 0, 10_000, 'the silent transaction holding the rows');
    // Far longer than the 1.5 s bound, far shorter than the server's TCP keepalive (two hours) that ended it before.
    await waitFor(async () => (await locked()) === 10, 20_000, 'the rows unlocked by the server');
    const { rows: idle } = await sql<{ n: string }>`
      SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`.execute(t.db);
    assert.equal(Number(idle[0].n), 0, 'no session left idle in its transaction');
    assert.deepEqual(await countBy(t.db), { 'download/waiting/locked': 10 }, 'the transaction rolled back: the rows as claimed, still held by the worker');
  });

  it('commitStatus tells a committed transaction from an aborted one and from one still open', async () => {
    const session = new pg.Client({ connectionString: t.url });
    await session.connect();
    cleanups.push(() => session.end());
    const begin = async () => {
      await session.query('BEGIN');
      return (await session.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')).rows[0].xid;
    };
    const committed = await begin();
    assert.equal(await commitStatus(t.db, committed), 'in progress');
    await session.query('COMMIT');
    assert.equal(await commitStatus(t.db, committed), 'committed');
    const aborted = await begin();
    await session.query('ROLLBACK');
    assert.equal(await commitStatus(t.db, aborted), 'aborted');
  });
});
