// A give-back the database refuses (a restart at that moment): the rows are given back later by the worker, or by
// lis_managerd's stuck_jobs once the worker stopped saying it still holds them; never left locked for the weekly repair.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import type { StageWorker } from '../src/daemon/run-daemon.ts';
import { closeLogger } from '../src/log/create-logger.ts';
import { markStopped, registerWorker } from '../src/daemon/worker-registry.ts';
import { UnreleasedRows } from '../src/imaged/unreleased-rows.ts';
import { releaseLeftRows, releaseStuckJobs } from '../src/manager/stuck-jobs.ts';
import { workerReport } from '../src/manager/worker-report.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';
import { runByHand } from './helpers/run-by-hand.ts';

/**
 * The server refusing the next `times` statements that unlock a row (a give-back, here: the stages report nothing
 * before it), as a restart does (57P01); a sequence, so that the refusal's rollback does not undo the count.
 */
async function refuseGiveBacks(t: TestDatabase, times: number): Promise<void> {
  await sql`CREATE SEQUENCE refused_give_backs`.execute(t.db);
  await sql
    .raw(
      `CREATE FUNCTION refuse_give_back() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF nextval('refused_give_backs') <= ${times} THEN
           RAISE EXCEPTION 'terminating connection due to administrator command (test)' USING ERRCODE = '57P01';
         END IF;
         RETURN NEW;
       END $$`,
    )
    .execute(t.db);
  // Only statements that unlock rows and change nothing else: a claim, a finish, a failure pass.
  await sql`CREATE TRIGGER refuse_give_back BEFORE UPDATE ON live_images FOR EACH ROW
              WHEN (OLD.locked_by IS NOT NULL AND NEW.locked_by IS NULL AND NEW.stage = OLD.stage AND NEW.state = OLD.state
                    AND NEW.attempts = OLD.attempts AND NEW.last_error IS NOT DISTINCT FROM OLD.last_error)
              EXECUTE FUNCTION refuse_give_back()`.execute(t.db);
}

/** A download stage that stops its run by hand on its first chunk, reporting nothing: the chunk's rows go back. */
function stoppingStage(stop: AbortController): StageWorker {
  return {
    component: 'testd',
    scope: 'Test',
    stage: 'download',
    processChunk() {
      stop.abort();
      return Promise.resolve();
    },
  };
}

describe('a give-back the database refuses', () => {
  let t: TestDatabase;
  const cleanups = databasePerTest((db) => (t = db));

  it('a worker that carries on gives the rows back before its next claim, and works them: none left locked, none charged', async () => {
    await insertUrls(t.db, 'uk', 6);
    await refuseGiveBacks(t, 1);
    const { log, lines } = capturedLogger('testd', t.config.log);
    cleanups.push(() => closeLogger(log));
    let chunks = 0;
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      // The first chunk reports nothing (its rows go back at once, and the server refuses that); later ones finish theirs.
      processChunk(rows, ctx) {
        if (chunks++ > 0) for (const row of rows) ctx.report({ ok: true, row: { id: row.id } });
        return Promise.resolve();
      },
    };
    await runByHand(stage, t, log);
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 6 }, lines.join('\n'));
    const charged = await t.db.selectFrom('live_images').select('id').where('attempts', '>', 0).execute();
    assert.equal(charged.length, 0, 'no attempt charged');
    assert.ok(
      lines.some((l) => /ERROR Could not give back 6 rows: terminating connection due to administrator command \(test\); giving them back later$/.test(l)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /WARN Gave back 6 rows the database had refused to take back: no attempt charged$/.test(l)),
      lines.join('\n'),
    );
    const [worker] = await t.db.selectFrom('workers').select(['holding', 'stopped_at']).execute();
    assert.equal(worker.holding, 0);
    assert.notEqual(worker.stopped_at, null);
  });

  it("a worker stopping while the server refuses says it still holds them, and lis_managerd's stuck_jobs releases them once, uncharged, blaming nobody", async () => {
    await insertUrls(t.db, 'uk', 6);
    // The chunk's give-back and the last try at the end.
    await refuseGiveBacks(t, 2);
    const { log, lines } = capturedLogger('testd', t.config.log);
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    await runByHand(stoppingStage(stop), t, log, { signal: stop.signal });
    assert.deepEqual(await countBy(t.db), { 'download/waiting/locked': 6 }, lines.join('\n'));
    const [worker] = await t.db.selectFrom('workers').select(['id', 'holding', 'stopped_at']).execute();
    assert.notEqual(worker.stopped_at, null, 'it stopped');
    assert.equal(worker.holding, 6, 'and said what it still holds');
    assert.ok(
      lines.some((l) => /ERROR .*: the rows this worker may still hold are left to the manager, which releases them once it is stopped$/.test(l)),
      lines.join('\n'),
    );

    // `lis worker-report` (and the status page) show them held, not 0, until the manager releases them.
    assert.deepEqual(
      (await workerReport(t.db, 60)).map((r) => [r.status, r.holding]),
      [['stopped', 6]],
    );
    // Not a dead worker: stuck_jobs' left rows, recorded as such (no worker_died alert reads them).
    assert.deepEqual(await releaseStuckJobs(t.db, 60, 'uk', 660), []);
    const left = await releaseLeftRows(t.db);
    assert.deepEqual(
      left.map((w) => [w.workerId, w.rows]),
      [[worker.id, 6]],
    );
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 6 });
    const charged = await t.db.selectFrom('live_images').select('id').where('attempts', '>', 0).execute();
    assert.equal(charged.length, 0, 'no attempt charged');
    assert.deepEqual(await releaseLeftRows(t.db), [], 'released once');
    const events = await t.db.selectFrom('manager_events').select(['check_name', 'subject', 'rows']).execute();
    assert.deepEqual(events, [{ check_name: 'left_rows', subject: worker.id, rows: 6 }]);
    const [after] = await t.db.selectFrom('workers').select('holding').execute();
    assert.equal(after.holding, 0);
  });

  it('a worker stopping gives back at the end what the server refused during its stop, once the server takes it', async () => {
    await insertUrls(t.db, 'uk', 6);
    await refuseGiveBacks(t, 1);
    const { log, lines } = capturedLogger('testd', t.config.log);
    cleanups.push(() => closeLogger(log));
    const stop = new AbortController();
    await runByHand(stoppingStage(stop), t, log, { signal: stop.signal });
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 6 }, lines.join('\n'));
    const [worker] = await t.db.selectFrom('workers').select(['holding', 'stopped_at']).execute();
    assert.equal(worker.holding, 0);
    assert.ok(
      lines.some((l) => /WARN Gave back 6 rows the database had not taken back before: no attempt charged$/.test(l)),
      lines.join('\n'),
    );
  });

  it('lis_imaged stopping with rows the server would not take back: its stop mark counts them, and stuck_jobs releases them', async () => {
    await insertUrls(t.db, 'uk', 2);
    const { log, lines } = capturedLogger('imaged', t.config.log);
    cleanups.push(() => closeLogger(log));
    const workerId = 'testhost:1:imaged01';
    await registerWorker(t.db, { id: workerId, component: 'imaged', host: 'testhost', pid: 1, country: null });
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId, storeHost: '', limit: 2, afterId: '0' });
    // Each row's give-back, then the last try at the stop.
    await refuseGiveBacks(t, 3);
    const unreleased = new UnreleasedRows(t.db, workerId, log);
    for (const row of rows) await unreleased.giveBack(row.id);
    await unreleased.close();
    assert.equal(unreleased.size, 2, lines.join('\n'));
    // What lis_imaged's exit does with them.
    await markStopped(t.db, workerId, unreleased.size);
    assert.deepEqual(
      (await releaseLeftRows(t.db)).map((w) => [w.workerId, w.rows]),
      [[workerId, 2]],
    );
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 2 });
  });
});
