// The runner's liveness: worker ids that cannot collide, wedged workers freed,
// released workers that learn it, permanent SQL errors, SIGTERM in an outage,
// and no head-of-line blocking behind a slow row.
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import net from 'node:net';
import { sql } from 'kysely';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { runDaemon, type RunOptions, type StageWorker } from '../src/daemon/run-daemon.ts';
import { workerIdFor } from '../src/daemon/worker-registry.ts';
import { DownloadWorker } from '../src/download/download-worker.ts';
import { closeLogger } from '../src/log/create-logger.ts';
import { releaseStuckJobs } from '../src/manager/stuck-jobs.ts';
import { openDaemonDatabase } from '../src/daemon/open-daemon-database.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { serverUpFor } from './helpers/server-uptime.ts';
import { readLog, readLogIfAny, waitForLogLine } from './helpers/log-files.ts';
import { restoreWallClock, stepWallClock } from './helpers/wall-clock.ts';

describe('daemon runner: liveness and ids', function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const cleanups = databasePerTest((made) => (t = made));

  /** A progress timeout of 1 s must be longer than every stage's bound on one row (the config refuses it otherwise). */
  const shortRowBounds = (): LisConfigInput => ({
    download: { ...t.config.download, timeouts: { ...t.config.download.timeouts, totalSeconds: 0.5 } },
    thumbnail: { ...t.config.thumbnail, timeoutSeconds: 0.5 },
    push: { ...t.config.push, timeoutSeconds: 1 },
  });

  /** runDaemon in this process with the test's config plus `overrides`. */
  function start(worker: StageWorker, overrides: LisConfigInput = {}, options: Partial<RunOptions> = {}) {
    const config = parseConfig({ ...t.config, ...overrides, queue: { ...t.config.queue, ...overrides.queue } }, {});
    const { log, lines } = capturedLogger(worker.component, config.log);
    const stop = new AbortController();
    const done = runDaemon(worker, { config, db: t.db, databaseUrl: t.url, log, country: 'uk', chunkSize: 50, service: true, signal: stop.signal, ...options });
    const settled = done.then(
      () => null,
      (error: Error & { code?: string }) => error,
    );
    cleanups.push(async () => {
      stop.abort();
      await settled;
      await closeLogger(log);
    });
    return { stop, done, settled, lines };
  }

  /** A stage that finishes each row at once and remembers who worked it. */
  function recordingStage(seen: Map<string, string>, twice: string[], name: string): StageWorker {
    return {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      async processChunk(rows, ctx) {
        for (const row of rows) {
          if (seen.has(row.id)) twice.push(`row ${row.id}: ${seen.get(row.id)} and ${name}`);
          seen.set(row.id, name);
          await new Promise((resolve) => setImmediate(resolve));
          ctx.report({ ok: true, row: { id: row.id } });
        }
      },
    };
  }

  it('two workers with the same host and pid get different ids and never share rows', async () => {
    assert.notEqual(workerIdFor('box', 1), workerIdFor('box', 1));
    assert.match(workerIdFor('box', 1), /^box:1:[0-9a-f]{8}$/);
    await insertUrls(t.db, 'uk', 400);
    const seen = new Map<string, string>();
    const twice: string[] = [];
    // Same host (config), same pid (one process): the situation of containers all running as pid 1.
    const a = start(recordingStage(seen, twice, 'a'), {}, { service: false });
    const b = start(recordingStage(seen, twice, 'b'), {}, { service: false });
    assert.equal(await a.settled, null);
    assert.equal(await b.settled, null);
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 400 });
    assert.equal(seen.size, 400);
    assert.deepEqual(twice, [], 'no row worked by both');
    const workers = await t.db.selectFrom('workers').select('id').execute();
    assert.equal(new Set(workers.map((w) => w.id)).size, 2);
  });

  it('a database restored from a backup under a running worker (its connections ended): rows the backup has it hold, which no chunk does, are given back uncharged and worked', async () => {
    let lost = 0;
    const stopDb = new AbortController();
    const db = await openDaemonDatabase(t.config, { service: false, signal: stopDb.signal, warn: () => {}, onConnectionLost: () => lost++ });
    cleanups.push(() => db.destroy());
    const workerId = workerIdFor('box', 1);
    const seen = new Map<string, string>();
    const run = start(recordingStage(seen, [], 'a'), { queue: { pollSeconds: 0.2, heartbeatSeconds: 0.2 } }, { db, workerId, connectionsLost: () => lost });
    await insertUrls(t.db, 'uk', 3);
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 3, 10_000, 'the first rows worked');
    // The restore: rows this worker had claimed when the backup was taken come back held by it, and every session
    // of the database is ended.
    await t.db.transaction().execute(async (trx) => {
      await insertUrls(trx, 'uk', 4, { prefix: 'http://img.example.com/restored/' });
      assert.equal((await claimChunk(trx, { country: 'uk', stage: 'download', workerId, storeHost: '', limit: 4, afterId: '0' })).length, 4);
    });
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${t.name} AND pid <> pg_backend_pid()`.execute(t.db);
    // Before, they stayed held by a worker whose heartbeat was alive: nobody released them.
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 7, 10_000, 'the rows the backup had it hold given back and worked');
    assert.ok(
      run.lines.some((l) => /^WARN Gave back 4 rows the database says this worker holds and no chunk in hand does \(after a lost connection/.test(l)),
      run.lines.join('\n'),
    );
    const attempts = await t.db.selectFrom('live_images').select('attempts').execute();
    assert.ok(
      attempts.every((r) => r.attempts === 0),
      'no attempt charged',
    );
  });

  /** Wedged on its first chunk (until that chunk is dropped); works later ones. */
  function wedgedOnce(): StageWorker {
    let chunks = 0;
    return {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      async processChunk(rows, ctx) {
        if (chunks++ === 0) return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
        for (const row of rows) ctx.report({ ok: true, row: { id: row.id } });
      },
    };
  }

  it('a wedged chunk is given back by the worker itself after queue.progressTimeoutSeconds, uncharged', async () => {
    await insertUrls(t.db, 'uk', 20);
    const run = start(wedgedOnce(), { ...shortRowBounds(), queue: { progressTimeoutSeconds: 1.5, heartbeatSeconds: 0.2, pollSeconds: 60 } });
    await waitFor(
      () => run.lines.some((l) => /^ERROR No progress on a chunk for \d+s .*giving back its 20 unfinished rows/.test(l)),
      20_000,
      'the wedged chunk given back',
    );
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 20, 10_000, 'the rows worked once given back');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(rows[0].n, 0);
  });

  it('a chunk at work is not taken for wedged when the wall clock steps forward an hour (NTP): its rows are worked, not given back', async () => {
    await insertUrls(t.db, 'uk', 5);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered = false;
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      async processChunk(rows, ctx) {
        entered = true;
        await gate;
        for (const row of rows) ctx.report({ ok: true, row: { id: row.id } });
      },
    };
    const run = start(stage, { queue: { heartbeatSeconds: 0.2, pollSeconds: 60 } });
    try {
      await waitFor(() => entered, 10_000, 'the chunk claimed');
      stepWallClock(3600_000);
      // Two beats after the step, on the database's clock (each beat also looks for wedged chunks).
      const beat = async () =>
        (
          await t.db
            .selectFrom('workers')
            .select(sql<number>`extract(epoch FROM max(heartbeat_at))::float8`.as('at'))
            .executeTakeFirstOrThrow()
        ).at;
      const stepped = await beat();
      await waitFor(async () => (await beat()) > stepped + 0.3, 5000, 'two heartbeats');
      release();
      await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 5, 10_000, 'the rows worked');
      assert.deepEqual(
        run.lines.filter((l) => /No progress on a chunk/.test(l)),
        [],
      );
    } finally {
      release();
      restoreWallClock();
    }
  });

  it("the manager frees a wedged worker's rows by its progress_at; the worker learns it and drops the chunk instead of reviving", async () => {
    await insertUrls(t.db, 'uk', 20);
    const run = start(wedgedOnce(), { queue: { heartbeatSeconds: 0.2, pollSeconds: 0.2 } });
    await waitFor(async () => Number((await t.db.selectFrom('workers').select('holding').executeTakeFirst())?.holding ?? 0) === 20, 10_000, 'holding 20');
    await sql`UPDATE workers SET progress_at = now() - interval '1 hour'`.execute(t.db);
    // Its heartbeat is fresh: only the lack of progress marks it.
    await serverUpFor(t.db, 2);
    const released = await releaseStuckJobs(t.db, 60, 'uk', 2);
    assert.equal(released.length, 1);
    assert.equal(released[0].rows, 20);
    await waitFor(() => run.lines.some((l) => /^ERROR The manager marked this worker stopped and released its rows/.test(l)), 10_000, 'the worker learns it');
    // Registered again, it claims the rows afresh (they were released, so it may) and works them.
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 20, 10_000, 'the rows worked after the release');
    assert.equal((await t.db.selectFrom('workers').select('stopped_at').executeTakeFirstOrThrow()).stopped_at, null, 'registered again');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(rows[0].n, 0);
  });

  it('a worker marked stopped as its run ends stays stopped: its last beat does not register it again', async () => {
    await insertUrls(t.db, 'uk', 5);
    const workerId = 'testhost:1:exit';
    // The manager (or our own exit, reached by a beat still under way) marks the worker stopped as the run ends.
    const stage: StageWorker = {
      ...recordingStage(new Map(), [], 'a'),
      async close() {
        await sql`UPDATE workers SET stopped_at = now() WHERE id = ${workerId}`.execute(t.db);
      },
    };
    const run = start(stage, { queue: { heartbeatSeconds: 60 } }, { service: false, workerId });
    await run.done;
    assert.deepEqual(
      run.lines.filter((l) => /registering again/.test(l)),
      [],
      'no registration after the run',
    );
    const workers = await t.db.selectFrom('workers').select(['id', 'stopped_at']).execute();
    assert.equal(workers.length, 1);
    assert.ok(workers[0].stopped_at, 'the worker row says stopped');
  });

  it("counts rows given back for our own fault: a bug in the stage's error rate (worker_minutes.ours), every class in the datasource's figures", async () => {
    await insertUrls(t.db, 'uk', 9);
    const classOf = (id: string) => ['internal', 'frontend_down', ''][Number(id) % 3];
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      processChunk(rows, ctx) {
        for (const row of rows) {
          const cls = classOf(row.id);
          ctx.report(
            cls
              ? { ok: false, failure: { id: row.id, attempts: row.attempts, reason: cls, errorClass: cls, retryable: true } }
              : { ok: true, row: { id: row.id } },
          );
        }
        return Promise.resolve();
      },
    };
    const run = start(stage, {}, { service: false });
    await run.done;
    const minutes = await sql<{ done: number; failed: number; ours: number }>`
      SELECT sum(done)::int AS done, sum(failed)::int AS failed, sum(ours)::int AS ours FROM worker_minutes`.execute(t.db);
    // frontend_down has an alert of its own (frontend down): only the bug counts in the stage's error rate.
    assert.deepEqual(minutes.rows[0], { done: 3, failed: 0, ours: 3 });
    const classes = await sql<{ error_class: string; n: number }>`
      SELECT error_class, sum(n)::int AS n FROM datasource_minutes GROUP BY 1 ORDER BY 1`.execute(t.db);
    assert.deepEqual(classes.rows, [
      { error_class: '', n: 3 },
      { error_class: 'frontend_down', n: 3 },
      { error_class: 'internal', n: 3 },
    ]);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(rows[0].n, 0, 'nobody charged');
  });

  it('a permanent SQL error (an undefined column) stops the daemon with a clear message instead of retrying for ever', async () => {
    await insertUrls(t.db, 'uk', 5);
    let renamed = false;
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      async processChunk(rows, ctx) {
        await sql`ALTER TABLE live_images RENAME COLUMN last_error TO last_error_gone`.execute(t.db);
        renamed = true;
        for (const row of rows) ctx.report({ ok: false, failure: { id: row.id, attempts: 0, reason: 'HTTP 404', errorClass: 'http_404', retryable: false } });
      },
    };
    const run = start(stage);
    const error = await run.settled;
    assert.ok(renamed);
    assert.ok(error, 'runDaemon rejected');
    assert.equal(error.code, 'ERR_DATABASE_PERMANENT');
    assert.match(error.message, /SQLSTATE 42703: retrying cannot fix this; stopping/);
  });

  it('SIGTERM during a database outage exits within seconds (at start-up and while running)', async () => {
    // A TCP proxy to the test's server that the test closes: the shared server is never touched.
    const proxy = await startDatabaseProxy(t.url);
    const cut = () => proxy.cut();
    cleanups.push(cut);
    const config = t.writeConfig({ database: { url: proxy.url }, queue: { heartbeatSeconds: 0.5 } });
    await insertUrls(t.db, 'uk', 200);
    const run: Spawned = spawnTs('test/fixtures/test-daemon.ts', ['--country', 'uk', '--config', config], { TEST_ROW_MS: '50' });
    cleanups.push(async () => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    await waitFor(async () => ((await countBy(t.db))['thumbnail/waiting'] ?? 0) >= 20, 30_000, 'work under way');
    await cut();
    await waitFor(() => /Could not write|Heartbeat failed|Database connection lost/.test(run.output()), 20_000, 'the outage seen');
    const stopped = Date.now();
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    const seconds = (Date.now() - stopped) / 1000;
    assert.ok(seconds < 5, `exited ${seconds.toFixed(1)}s after SIGTERM:\n${run.output()}`);
    assert.equal(code, 0, run.output());

    // At start-up: waiting for a database that is not there ends at SIGTERM too.
    const waiting = spawnTs('test/fixtures/test-daemon.ts', ['--country', 'uk', '--config', config, '--service']);
    cleanups.push(async () => {
      if (waiting.child.exitCode === null) waiting.child.kill('SIGKILL');
      await waiting.exited;
    });
    const logFile = path.join(t.config.log.dir, 'testd.uk.log');
    await waitForLogLine(logFile, /database not reachable/); // waiting for the database
    const asked = Date.now();
    waiting.child.kill('SIGTERM');
    const { code: waitingCode } = await waiting.exited;
    assert.ok((Date.now() - asked) / 1000 < 5, waiting.output());
    // The operator's stop, not a failure: exit 0, and the log says what it was waiting for.
    assert.equal(waitingCode, 0, waiting.output());
    await waitForLogLine(logFile, /Stopped while waiting for the database: /);
  });

  it('after "Cannot claim work" in a database outage, the log says when the database is back, and work goes on', async () => {
    const proxy = await startDatabaseProxy(t.url);
    cleanups.push(() => proxy.cut());
    const config = t.writeConfig({ database: { url: proxy.url }, queue: { heartbeatSeconds: 0.5, pollSeconds: 0.2 } });
    const run: Spawned = spawnTs('test/fixtures/test-daemon.ts', ['--country', 'uk', '--config', config, '--service']);
    cleanups.push(async () => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    const logFile = path.join(t.config.log.dir, 'testd.uk.log');
    const logged = (pattern: RegExp) => pattern.test(readLogIfAny(logFile));
    await waitFor(() => logged(/Starting testd for UK/), 20_000, 'the daemon started');
    await proxy.cut();
    await waitFor(() => logged(/Cannot claim work: .*; trying again/), 20_000, 'the outage logged');
    await proxy.restore();
    await insertUrls(t.db, 'uk', 5);
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 5, 30_000, 'the rows worked after the outage');
    // Logged as the claim came back, before the rows were worked; winston writes the file after the call returns.
    await waitForLogLine(logFile, /Database reachable again after \d+ failed claims: carrying on/, 10_000).catch((error: Error) => {
      throw new Error(`${error.message}:\n${readLog(logFile)}`);
    });
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
  });

  it('a URL that drips a byte a second holds neither the rest of its chunk nor the next chunk', async () => {
    // A drip ends when its 16th byte lets the download sniff it (not_image), 16 s in, or as soon as every fast
    // row is done (the test sends the rest then): the fast rows are waited for, not a fixed 16 s. Were they
    // held behind a drip, they would be done only after it ended, and the check below fails.
    const dripping = new Set<http.ServerResponse>();
    const endDrips = () => {
      for (const res of dripping) res.write(Buffer.alloc(16, 0xff));
    };
    const server = http.createServer((req, res) => {
      if (req.url!.includes('drip')) {
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': '100000' });
        dripping.add(res);
        const timer = setInterval(() => res.write(Buffer.from([0xff])), 1000);
        res.on('close', () => (clearInterval(timer), dripping.delete(res)));
        return;
      }
      res.writeHead(404).end('no');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    const origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    // Chunks of 40: one drip URL each, the rest fail fast (a 404 is as good as an image here: a result).
    const urls = Array.from({ length: 240 }, (_, i) => (i % 40 === 0 ? `${origin}/drip/${i}.jpg` : `${origin}/img/${i}.jpg`));
    await t.db
      .insertInto('live_images')
      .values(urls.map((image_url) => ({ country: 'uk', datasource_id: 1, image_url })))
      .execute();
    const overrides: LisConfigInput = { download: { allowAddresses: ['127.0.0.1:*'], concurrency: 8, perHostConcurrency: 8, perHostDelaySeconds: 0 } };
    const config = parseConfig({ ...t.config, ...overrides }, {});
    const run = start(new DownloadWorker(config, t.db, 'uk'), overrides, { chunkSize: 40 });
    const fastDone = async () => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM live_images WHERE image_url NOT LIKE '%/drip/%' AND state = 'failed'`.execute(
        t.db,
      );
      return rows[0].n === 234;
    };
    await waitFor(fastDone, 60_000, 'every fast row done');
    endDrips();
    await waitFor(async () => (await countBy(t.db))['download/failed'] === 240, 60_000, 'every row done (the drips cut by their sniff)');
    const { rows } = await sql<{ drip: boolean; first: Date; last: Date }>`
      SELECT image_url LIKE '%/drip/%' AS drip, min(updated_at) AS first, max(updated_at) AS last FROM live_images GROUP BY 1`.execute(t.db);
    const fast = rows.find((r) => !r.drip)!;
    const drips = rows.find((r) => r.drip)!;
    // Every fast row of all six chunks was finished before the first drip ended: no chunk waited for its drip.
    assert.ok(fast.last < drips.first, `fast rows done by ${fast.last.toISOString()}, first drip ended ${drips.first.toISOString()}\n${run.lines.join('\n')}`);
    run.stop.abort();
    assert.equal(await run.settled, null);
  });
});
