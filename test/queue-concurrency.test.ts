// Every queue operation at once against a multi-worker drain: no deadlock, no row moved twice, every row where it must end.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/connect.ts';
import { disableDatasource, enableDatasource } from '../src/manager/datasource-switch.ts';
import { releaseStuckJobs } from '../src/manager/stuck-jobs.ts';
import { FRONTEND_ERROR_CLASSES } from '../src/push/frontend-registry.ts';
import { ClaimCursor } from '../src/queue/claim-cursor.ts';
import { listMissingClaimable } from '../src/queue/claimable-rows.ts';
import { failRows } from '../src/queue/fail-rows.ts';
import { finishRows, type FinishedRow } from '../src/queue/finish-rows.ts';
import { giveUpRows } from '../src/queue/give-up-rows.ts';
import { endPurge, markRowsForPurge } from '../src/queue/purge-rows.ts';
import { refreshRows } from '../src/queue/refresh-rows.ts';
import { retryFailedRows } from '../src/queue/retry-rows.ts';
import { reworkRows } from '../src/queue/rework-rows.ts';
import { WORK_STAGES, type WorkStage } from '../src/queue/stages.ts';
import { wakeRowsWaitingOnFrontends } from '../src/queue/wake-rows.ts';
import { insertUrls, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { serverUpFor } from './helpers/server-uptime.ts';

const ROWS = 2000;
const LIVE_AT_START = 600;
const WORKERS = 4;
const CHUNK = 40;
const CHAOS_ROUNDS = 12;
const policy = { maxAttempts: 1000, backoff: { baseSeconds: 0.05, maxSeconds: 0.1, jitter: 0 } };

async function deadlocks(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()`.execute(db);
  return rows[0].n;
}

describe('the queue under concurrent operations', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('a multi-worker drain meets park, unpark, retry, refresh, rethumbnail, wake, give-up, dead-worker release and purge: no deadlock, each move once', async function () {
    this.timeout(180_000);
    // Every stage move, with the worker that made it (null: an operation on unheld rows); a test-only audit.
    await sql`
      CREATE TABLE moves (id bigint, from_stage text, to_stage text, worker text);
      CREATE FUNCTION audit_move() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO moves VALUES (NEW.id, OLD.stage, NEW.stage, OLD.locked_by); RETURN NULL; END $$;
      CREATE TRIGGER audit_move AFTER UPDATE ON live_images FOR EACH ROW
        WHEN (OLD.stage IS DISTINCT FROM NEW.stage) EXECUTE FUNCTION audit_move();`.execute(t.db);
    for (const ds of [1, 2, 3, 4]) await insertUrls(t.db, 'uk', ROWS / 4, { datasourceId: ds, prefix: `http://img${ds}.example.com/` });
    const data = (v: number) => JSON.stringify({ presets: { small: { width: 1, height: 1, bytes: 1, path: `v${v}.jpg` } }, version: v });
    // Set-up by hand: some rows are live already (old originals, for refresh and rethumbnail to find).
    await sql`UPDATE live_images SET stage = 'live', state = 'done', image_data = ${data(1)}::jsonb, live_data = ${data(1)}::jsonb,
                     downloaded_at = now() - interval '60 days' WHERE id <= ${LIVE_AT_START}`.execute(t.db);
    await relistAll(t.db);
    const deadlocksBefore = await deadlocks(t.db);

    const errors: unknown[] = [];
    const held = new Map<string, string>();
    const violations: string[] = [];
    let movedByWorkers = 0;
    let chaosDone = false;
    let failing = true;
    const allLive = async (db: Db) => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE NOT (stage = 'live' AND state = 'done')`.execute(db);
      return rows[0].n === 0;
    };

    const worker = async (i: number) => {
      const db = createDb(t.url, 2);
      const id = `w${i}`;
      const cursors = Object.fromEntries(
        WORK_STAGES.map((stage) => [stage, new ClaimCursor(db, { country: 'uk', stage, workerId: id, storeHost: '' })]),
      ) as Record<WorkStage, ClaimCursor>;
      try {
        for (;;) {
          // Once an operation failed (the chaos's or a worker's), the queue may never all go live (a datasource left
          // disabled, rows left failed): the workers stop, and the failure is told at once, not at the test's timeout.
          if (errors.length > 0) return;
          let got = 0;
          for (const stage of WORK_STAGES) {
            const rows = await cursors[stage].next(CHUNK);
            got += rows.length;
            for (const r of rows) {
              if (held.has(r.id)) violations.push(`${r.id} claimed by ${id} while ${held.get(r.id)} held it`);
              held.set(r.id, id);
            }
            const finished: FinishedRow[] = [];
            const failures = [];
            for (const r of rows) {
              const roll = (Number(r.id) * 7 + got) % 100;
              if (failing && stage === 'push' && roll < 5) {
                failures.push({ id: r.id, attempts: r.attempts, reason: 'down', errorClass: 'frontend_down', retryable: true });
              } else if (failing && stage === 'download' && roll === 50) {
                failures.push({ id: r.id, attempts: r.attempts, reason: 'HTTP 404', errorClass: 'http_404', retryable: false });
              } else if (stage === 'download' && r.priority === 1 && roll % 2 === 0) {
                finished.push({ id: r.id, toStage: 'live', set: { downloaded_at: new Date().toISOString() } }); // a 304
              } else if (stage === 'thumbnail') {
                const version = ((r.image_data as { version?: number } | null)?.version ?? 0) + 1;
                finished.push({ id: r.id, set: { image_data: JSON.parse(data(version)) as Record<string, unknown> } });
              } else {
                finished.push({ id: r.id });
              }
            }
            for (const r of rows) held.delete(r.id);
            const moved = await finishRows(db, id, stage, finished);
            movedByWorkers += moved;
            await failRows(db, id, failures, policy);
          }
          if (got === 0) {
            // A worker may have decided a failure while `failing` was still true and written it after the chaos's last
            // retry: put such stragglers back too (a permanent one would wait for ever), then see whether all is live.
            if (chaosDone) await retryFailedRows(db, { country: 'uk' });
            if (chaosDone && (await allLive(db))) return;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
      } catch (error) {
        errors.push(error);
      } finally {
        await db.destroy();
      }
    };

    const purged: string[] = [];
    const chaos = async () => {
      const db = createDb(t.url, 2);
      try {
        // Its dead workers are judged silent for 2 s, counted from the server's start at the earliest.
        await serverUpFor(db, 2);
        for (let round = 0; round < CHAOS_ROUNDS; round++) {
          await disableDatasource(db, 'uk', 2, 'chaos');
          await refreshRows(db, { country: 'uk', olderThanDays: 30, limit: 40 });
          await reworkRows(db, 'thumbnail', { country: 'uk', datasourceId: 3, limit: 30 });
          await wakeRowsWaitingOnFrontends(db, FRONTEND_ERROR_CLASSES);
          await giveUpRows(db, { country: 'uk', minAttempts: 1000, exceptErrorClasses: FRONTEND_ERROR_CLASSES });
          await enableDatasource(db, 'uk', 2);
          await retryFailedRows(db, { country: 'uk' });
          // A worker dies holding rows; the manager releases them.
          await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at) VALUES (${`dead${round}`}, 'testd', 'gone', 1, now() - interval '1 hour')`.execute(
            db,
          );
          const victim = new ClaimCursor(db, { country: 'uk', stage: WORK_STAGES[round % 3], workerId: `dead${round}`, storeHost: '' });
          await victim.next(10);
          await releaseStuckJobs(db, 2);
          // Purge a few rows the ETL stopped listing.
          const { rows } = await sql<{ id: string; image_hash: string }>`
            SELECT id, image_hash FROM live_images WHERE locked_by IS NULL AND id % 97 = ${round} ORDER BY id LIMIT 3`.execute(db);
          // A worker may claim one of them after the SELECT: marking leaves a held row alone, and so deletes only the marked.
          const marked = await markRowsForPurge(
            db,
            rows.map((r) => r.id),
            30,
          );
          const { deleted } = await endPurge(db, 'uk', rows, { purgeAfterDays: 30, deleteRest: true });
          assert.equal(deleted, marked);
          const { rows: kept } = await sql<{ id: string }>`SELECT id::text AS id FROM live_images WHERE id = ANY(${rows.map((r) => r.id)}::bigint[])`.execute(
            db,
          );
          purged.push(...rows.map((r) => r.id).filter((id) => !kept.some((k) => k.id === id)));
        }
        failing = false;
        await retryFailedRows(db, { country: 'uk' });
        chaosDone = true;
      } catch (error) {
        errors.push(error);
        chaosDone = true;
      } finally {
        await db.destroy();
      }
    };

    await Promise.all([...Array.from({ length: WORKERS }, (_, i) => worker(i)), chaos()]);
    assert.deepEqual(errors.map(String), [], 'no operation failed (a deadlock would show here as 40P01)');
    assert.deepEqual(violations, [], 'no row held by two workers at once');

    const {
      rows: [end],
    } = await sql<{ rows: number; live: number; same: number; held: number; listed: number }>`
      SELECT count(*)::int AS rows,
             count(*) FILTER (WHERE stage = 'live' AND state = 'done')::int AS live,
             count(*) FILTER (WHERE live_data = image_data)::int AS same,
             count(*) FILTER (WHERE locked_by IS NOT NULL)::int AS held,
             (SELECT count(*)::int FROM claimable_rows) AS listed
        FROM live_images`.execute(t.db);
    assert.deepEqual(
      end,
      { rows: ROWS - purged.length, live: ROWS - purged.length, same: ROWS - purged.length, held: 0, listed: 0 },
      'every row not purged is live, serving what it was worked on, held by nobody, and no entry is left',
    );
    assert.equal(await listMissingClaimable(t.db, undefined, { dryRun: true }), 0);
    const {
      rows: [moves],
    } = await sql<{ n: number; workers: number }>`SELECT count(*)::int AS n, count(*) FILTER (WHERE worker LIKE 'w%')::int AS workers FROM moves`.execute(t.db);
    assert.equal(moves.workers, movedByWorkers, 'each stage move a worker reported was made once, by it');
    // A row leaves a stage by a worker's finish at most as often as it entered it (rows start in download).
    const { rows: dupes } = await sql<{ id: string }>`
      SELECT m.id, m.from_stage FROM moves m WHERE m.worker IS NOT NULL GROUP BY m.id, m.from_stage
      HAVING count(*) > (SELECT count(*) FROM moves x WHERE x.id = m.id AND x.to_stage = m.from_stage) + (CASE WHEN m.from_stage = 'download' THEN 1 ELSE 0 END)
       LIMIT 5`.execute(t.db);
    assert.deepEqual(dupes, [], 'no row moved on twice from one stage without being sent back in between');
    assert.equal(await deadlocks(t.db), deadlocksBefore, 'pg_stat_database.deadlocks unchanged');
  });
});
