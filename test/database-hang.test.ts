// A database that hangs (accepts, or keeps, the connection and never answers), as opposed to one that
// refuses: the daemons' runner says so, pauses, carries on when it answers again, charges nobody, and a
// stop still ends the process within its grace.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { createDb, type Db } from '../src/db/connect.ts';
import { connectionFailure } from '../src/db/connection-failure.ts';
import { openDatabase } from '../src/db/open-database.ts';
import { runDaemon, type StageWorker } from '../src/daemon/run-daemon.ts';
import { closeLogger } from '../src/log/create-logger.ts';
import { startDatabaseProxy, type DatabaseProxy } from './helpers/database-proxy.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';
import { readLog, readLogIfAny, waitForLogLine } from './helpers/log-files.ts';

/** Short bounds, so that a test sees them run out; the services' own come from their config (serviceQueryBounds). */
const TEST_BOUNDS = { connectMs: 1000, queryMs: 1500 };
/** The same, as a process's config sets them. */
const TEST_DATABASE_BOUNDS = { connectTimeoutSeconds: 1, queryTimeoutSeconds: 1.5 };
/** A stop's wait on one database call (database.stopWaitSeconds, 5 s by default), short: the stop tests wait it out. */
const SHORT_STOP_WAIT = { stopWaitSeconds: 0.5 };

/** A stage that finishes each row at once. */
const instantStage: StageWorker = {
  component: 'testd',
  scope: 'Test',
  stage: 'download',
  processChunk(rows, ctx) {
    for (const row of rows) ctx.report({ ok: true, row: { id: row.id } });
    return Promise.resolve();
  },
};

/**
 * The server keeping our connections and answering nothing on live_images (as one frozen on I/O, or
 * stalled on a full disk's WAL): a session of its own holds the table's strongest lock until `end`.
 */
async function freezeQueue(url: string): Promise<{ session: pg.Client; end: (then?: string) => Promise<void> }> {
  const session = new pg.Client({ connectionString: url });
  await session.connect();
  await session.query('BEGIN');
  await session.query('LOCK TABLE live_images IN ACCESS EXCLUSIVE MODE');
  return {
    session,
    end: async (then) => {
      if (then) await session.query(then);
      await session.query('COMMIT');
      await session.end();
    },
  };
}

/** A path that accepts connections and never answers, on the relay's port while the relay is cut. */
async function blackHole(port: number): Promise<{ accepted: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket.on('error', () => {}).on('close', () => sockets.delete(socket)));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

describe('a database that hangs', function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const cleanups = databasePerTest((made) => (t = made));

  it('a client whose connection broke ("not queryable") is the database away, named as such, for every caller', async () => {
    const client = new pg.Client({ connectionString: t.url });
    await client.connect();
    cleanups.push(() => client.end().catch(() => {}));
    // on, not once: a terminated backend can make the client emit twice (the server's FATAL, then "Connection
    // terminated unexpectedly" as the socket ends), and an error with no listener is an uncaught exception.
    const broken = new Promise((resolve) => client.on('error', resolve));
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await sql`SELECT pg_terminate_backend(${rows[0].pid})`.execute(t.db);
    await broken;
    const error = await client.query('SELECT 1').then(
      () => null,
      (e: Error) => e,
    );
    assert.match(String(error?.message), /is not queryable/, 'pg says it so');
    const away = connectionFailure(t.url, error);
    assert.equal(away?.code, 'ERR_DATABASE');
    assert.match(
      String(away?.message),
      /^cannot connect to the database at 127\.0\.0\.1:\d+\/lis_test_\w+ as \w+: Client has encountered a connection error and is not queryable$/,
    );
  });

  it('a query the server does not answer in time fails ERR_DATABASE_TIMEOUT, and its connection is dropped, not handed to the next query', async () => {
    // One connection, so that the next query would get the same one. The session's statement_timeout off: the
    // server goes on with the query as a frozen one would, and only our own timer can end the wait.
    const db = createDb(t.url, 1, () => {}, TEST_BOUNDS);
    cleanups.push(() => db.destroy());
    const error = await db.connection().execute(async (c) => {
      await sql`SET statement_timeout = 0`.execute(c);
      return sql`SELECT pg_sleep(60)`.execute(c).then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
    });
    assert.equal(error?.code, 'ERR_DATABASE_TIMEOUT', String(error));
    assert.match(String(error?.message), /^the database at 127\.0\.0\.1:\d+\/lis_test_\w+ as \w+ is not answering: no reply to a query in 1\.5 s$/);
    assert.equal(connectionFailure(t.url, error), error, 'callers name it as it is');
    const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(db);
    assert.deepEqual(rows, [{ one: 1 }], 'the next query has a connection of its own');
  });

  it('the server cancelling a query at the bound (statement_timeout) is the same outage, on a connection still sound', async () => {
    const db = createDb(t.url, 1, () => {}, TEST_BOUNDS);
    cleanups.push(() => db.destroy());
    const before = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db);
    const error = await sql`SELECT pg_sleep(60)`.execute(db).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    assert.equal(error?.code, 'ERR_DATABASE_TIMEOUT', String(error));
    const after = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db);
    assert.equal(after.rows[0].pid, before.rows[0].pid, 'the same connection serves on');
  });

  /** runDaemon in this process, through the relay, on a pool with TEST_BOUNDS. */
  async function startRunner(relay: DatabaseProxy) {
    const config = parseConfig({ ...t.config, queue: { ...t.config.queue, pollSeconds: 1, heartbeatSeconds: 1 } }, {});
    const db: Db = createDb(relay.url, 4, () => {}, TEST_BOUNDS);
    const { log, lines } = capturedLogger('testd', config.log);
    const stop = new AbortController();
    let ready!: () => void;
    const started = new Promise<void>((resolve) => (ready = resolve));
    const settled = runDaemon(instantStage, {
      config,
      db,
      databaseUrl: relay.url,
      log,
      country: 'uk',
      chunkSize: 50,
      service: true,
      signal: stop.signal,
      onReady: () => ready(),
    }).then(
      () => null,
      (error: Error) => error,
    );
    cleanups.push(async () => {
      stop.abort();
      await settled;
      await db.destroy();
      await closeLogger(log);
    });
    await Promise.race([started, settled.then((e) => Promise.reject(e ?? new Error('the runner ended before it was ready')))]);
    const text = () => lines.join('\n');
    /** Waits for a log line, showing the log when it does not come. */
    const logged = (line: RegExp, what: string) =>
      waitFor(() => line.test(text()), 30_000, what).catch((error: Error) => {
        throw new Error(`${error.message}; the log:\n${text()}`);
      });
    return { settled, text, logged };
  }

  it('a query left unanswered: the runner says "Database not answering", pauses, and works on when it answers, charging nobody', async () => {
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    const run = await startRunner(relay);
    const frozen = await freezeQueue(t.url);
    cleanups.push(() => frozen.end().catch(() => {}));
    await run.logged(
      /ERROR Database not answering \(claiming work\): the database at .* is not answering: no reply to a query in 1\.5 s; trying again/,
      'the claim said unanswered',
    );
    // The rows arrive as the server answers again: they are claimed and worked as usual.
    await frozen.end(
      `INSERT INTO live_images (country, datasource_id, image_url) SELECT 'uk', 1, 'http://feed.example.com/' || g || '.jpg' FROM generate_series(1, 120) g`,
    );
    // Every row, the first claim's too: the server cancelled it (statement_timeout), so it cannot have taken rows after all.
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 120, 30_000, 'every row worked');
    assert.match(run.text(), /Database reachable again after \d+ failed claims: carrying on/);
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE attempts > 0 OR last_error IS NOT NULL`.execute(t.db);
    assert.equal(Number(rows[0].n), 0, 'a database that hangs is our fault: no row charged');
    assert.equal(await Promise.race([run.settled, 'running']), 'running', 'a hang is waited out, never fatal');
  });

  it("a service's start that migrates (the embedded default) against a path that never answers: its migration's connect fails at the connect bound, not never", async () => {
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    relay.hang();
    const config = { ...t.config, database: { ...t.config.database, url: relay.url } };
    const opening = openDatabase(config, { migrate: true, bounds: { connectMs: 500, queryMs: 1000 } });
    const outcome = await Promise.race([
      opening.then(
        () => 'opened',
        (error: unknown) => error,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still waiting after 15 s'), 15_000).unref()),
    ]);
    assert.equal((outcome as { code?: string }).code, 'ERR_DATABASE_TIMEOUT', String(outcome));
    assert.match(String(outcome), /not answering: no answer to a connect/);
  });

  it('a path that accepts connections and never answers: connects time out, said as such, and the runner carries on once the path is back', async () => {
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    const run = await startRunner(relay);
    await relay.cut();
    const hole = await blackHole(relay.port);
    cleanups.push(() => hole.close());
    await run.logged(
      /ERROR Database not answering \(claiming work\): the database at .* is not answering: no answer to a connect in 1 s; trying again/,
      'the connect said unanswered',
    );
    assert.ok(hole.accepted() > 0, 'the connects reached the black hole');
    await run.logged(/WARN Database not answering \(heartbeat\): the database at .* is not answering/, 'the heartbeat said unanswered');
    await hole.close();
    await relay.restore();
    await insertUrls(t.db, 'uk', 80);
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 80, 30_000, 'every row worked after the path came back');
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(Number(rows[0].n), 0, 'no row charged');
  });

  /** A real daemon (test/fixtures/test-daemon.ts) as a service, registered; its config's pollSeconds 1, and `overrides`. */
  async function startDaemonProcess(env: NodeJS.ProcessEnv = {}, overrides: LisConfigInput = {}) {
    const config = t.writeConfig({ ...overrides, queue: { ...t.config.queue, pollSeconds: 1, ...overrides.queue } });
    const run = spawnTs('test/fixtures/test-daemon.ts', ['--country', 'uk', '--config', config, '--service'], env);
    cleanups.push(() => void (run.child.exitCode === null && run.child.kill('SIGKILL')));
    await waitFor(
      async () => {
        const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL`.execute(t.db);
        return Number(rows[0].n) === 1;
      },
      30_000,
      'the daemon registered',
    );
    return run;
  }

  /** Waits until a query of the daemon's waits on the frozen table, unanswered. */
  const daemonWaiting = () =>
    waitFor(
      async () => {
        const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'imagesys:%' AND wait_event_type = 'Lock'`.execute(t.db);
        return Number(rows[0].n) > 0;
      },
      30_000,
      'a query of the daemon waiting unanswered',
    );

  /** SIGTERM, then the exit within 20 s (services.stopTimeoutSeconds is 60 s: room for a loaded machine); its log. */
  async function stopWithinGrace(run: ReturnType<typeof spawnTs>): Promise<string> {
    const signalled = Date.now();
    run.child.kill('SIGTERM');
    const exit = await Promise.race([run.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000).unref())]);
    assert.ok(exit, `still running ${Math.round((Date.now() - signalled) / 1000)} s after SIGTERM:\n${run.output()}`);
    assert.equal(exit.code, 0, run.output());
    const logged = readLog(path.join(t.config.log.dir, 'testd.uk.log'));
    assert.match(logged, /Exiting\(time_to_die: 1\)/);
    return logged;
  }

  it("a real daemon's bounds are its config's (database.queryTimeoutSeconds): a claim left unanswered fails at 1.5 s, and the daemon works on when it answers", async () => {
    const run = await startDaemonProcess({}, { database: { ...t.config.database, ...TEST_DATABASE_BOUNDS } });
    const frozen = await freezeQueue(t.url);
    cleanups.push(() => frozen.end().catch(() => {}));
    const logFile = path.join(t.config.log.dir, 'testd.uk.log');
    await waitFor(
      () => fs.existsSync(logFile) && /ERROR .*Database not answering \(claiming work\): .* no reply to a query in 1\.5 s; trying again/.test(readLog(logFile)),
      30_000,
      'the claim said unanswered after the configured bound',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; the daemon:\n${run.output()}`);
    });
    await frozen.end(
      `INSERT INTO live_images (country, datasource_id, image_url) SELECT 'uk', 1, 'http://feed.example.com/' || g || '.jpg' FROM generate_series(1, 20) g`,
    );
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 20, 30_000, 'every row worked');
    await stopWithinGrace(run);
  });

  it('a claim whose answer is lost (the server committed it, then the path hung): once the path is back, a real daemon gives its rows back and works them, each once, charging nobody', async () => {
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    await insertUrls(t.db, 'uk', 30);
    // claim-chunk.ts's statement (its text goes out in its Parse, on the first claim of a connection).
    const claimSent = relay.stallAfter('claimed AS (');
    const run = await startDaemonProcess({}, { database: { ...t.config.database, url: relay.url, ...TEST_DATABASE_BOUNDS } });
    const logFile = path.join(t.config.log.dir, 'testd.uk.log');
    const log = () => readLogIfAny(logFile);
    const logged = (line: RegExp, what: string) =>
      waitFor(() => line.test(log()), 30_000, what).catch((error: Error) => {
        throw new Error(`${error.message}; the daemon:\n${run.output()}`);
      });
    await claimSent;
    await logged(/ERROR .*Database not answering \(claiming work\): .* no reply to a query in 1\.5 s; trying again/, 'the claim timed out');
    assert.deepEqual(
      await countBy(t.db),
      { 'download/waiting/locked': 30 },
      'the server committed the claim: the rows are locked by the live daemon, in no chunk',
    );
    relay.mend();
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 30, 60_000, 'every row worked once the path was back').catch(
      async (error: Error) => {
        throw new Error(`${error.message}: ${JSON.stringify(await countBy(t.db))}; the log:\n${log()}`);
      },
    );
    // Logged before the rows were claimed again and worked; winston writes the file after the call returns.
    await waitForLogLine(
      logFile,
      /WARN .*Gave back 30 rows a failed claim had taken \(the server committed it, its answer was lost\): no attempt charged/,
      10_000,
    );
    // Each chunk's line comes after its results are written: waited for, then counted.
    const worked = () => [...log().matchAll(/Chunk done: (\d+) of \d+ rows/g)].reduce((n, m) => n + Number(m[1]), 0);
    await waitFor(() => worked() >= 30, 30_000, 'the chunks said done');
    assert.equal(worked(), 30, 'each row worked once');
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE attempts > 0 OR last_error IS NOT NULL`.execute(t.db);
    assert.equal(Number(rows[0].n), 0, 'no row charged');
    await stopWithinGrace(run);
  });

  it('work notifications after a cut-and-restored path, and after a path gone silent under the LISTEN connection, still wake a real daemon long before its poll', async () => {
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    // Polling every 10 minutes: rows worked within the test's deadlines were woken by a notification.
    const queue = { ...t.config.queue, pollSeconds: 600, heartbeatSeconds: 1 };
    const run = await startDaemonProcess({}, { database: { ...t.config.database, url: relay.url, ...TEST_DATABASE_BOUNDS }, queue });
    const logFile = path.join(t.config.log.dir, 'testd.uk.log');
    const log = () => readLogIfAny(logFile);
    const count = (line: RegExp) => log().match(new RegExp(line.source, 'gm'))?.length ?? 0;
    const logged = (line: RegExp, times: number, what: string) =>
      waitFor(() => count(line) >= times, 30_000, what).catch((error: Error) => {
        throw new Error(`${error.message}; the log:\n${log()}`);
      });
    const lost = /WARN .*notification connection lost: /;
    const back = /INFO .*notification connection back: listening for work again/;
    let rows = 0;
    const insert = async () => {
      await insertUrls(t.db, 'uk', 10, { prefix: `http://feed.example.com/${rows}/` });
      rows += 10;
    };
    const worked = (what: string) =>
      waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === rows, 30_000, what).catch((error: Error) => {
        throw new Error(`${error.message}; the log:\n${log()}`);
      });
    const woken = async (what: string) => {
      await insert();
      await worked(what);
    };
    await woken('rows worked: the notifications reach the daemon');

    // The server away and back: the connection reset, its loss said once, its return once.
    await relay.cut();
    await logged(lost, 1, 'the LISTEN connection said lost');
    await relay.restore();
    await logged(back, 1, 'the LISTEN connection said back');
    await woken('rows worked after a cut-and-restored path');

    // The path silent under the LISTEN connection: nothing fails by itself; its check, within the query bound, finds it.
    relay.stall();
    await logged(lost, 2, 'the silent LISTEN connection found lost');
    // Rows added meanwhile: their notification is lost with the connection; its return wakes the daemon for them.
    await insert();
    relay.mend();
    await logged(back, 2, 'the LISTEN connection back after the path mended');
    await worked('rows added while the path was silent worked once it mended');
    await woken('rows worked after a silent path mended');
    assert.equal(count(lost), 2, 'each loss said once, not each try');
    assert.equal(count(back), 2);
    await stopWithinGrace(run);
  });

  it('SIGTERM while a claim hangs: a real daemon exits within its grace, leaving the claim', async () => {
    const run = await startDaemonProcess({}, { database: { ...t.config.database, ...SHORT_STOP_WAIT } });
    const frozen = await freezeQueue(t.url);
    cleanups.push(() => frozen.end().catch(() => {}));
    await daemonWaiting();
    const logged = await stopWithinGrace(run);
    assert.match(logged, /Database not answering \(claiming work\) as we stop: leaving the claim/);
  });

  it('SIGTERM while the results of the rows in hand cannot be written: a real daemon exits within its grace, charging nobody', async () => {
    await insertUrls(t.db, 'uk', 40);
    const run = await startDaemonProcess({ TEST_ROW_MS: '300' }, { database: { ...t.config.database, ...SHORT_STOP_WAIT } });
    await waitFor(async () => (await countBy(t.db))['download/waiting/locked'] > 0, 30_000, 'a chunk claimed');
    const frozen = await freezeQueue(t.url);
    cleanups.push(() => frozen.end().catch(() => {}));
    await daemonWaiting();
    const logged = await stopWithinGrace(run);
    assert.match(logged, /Database not answering \((writing results|giving back rows)\)/);
    await frozen.end();
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(Number(rows[0].n), 0, 'no row charged');
  });
  it('SIGTERM with the database answering: the row in hand finishing long after the signal still has its result written', async function () {
    this.timeout(60_000);
    await insertUrls(t.db, 'uk', 3);
    // Each row takes 2 s, longer than the stop's wait on one database call (database.stopWaitSeconds, 0.5 s here).
    const run = await startDaemonProcess({ TEST_ROW_MS: '2000' }, { database: { ...t.config.database, ...SHORT_STOP_WAIT } });
    await waitFor(async () => (await countBy(t.db))['download/waiting/locked'] === 3, 30_000, 'the chunk claimed');
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 1, 'download/waiting': 2 }, 'the row in hand done, the rest given back');
    const logged = readLog(path.join(t.config.log.dir, 'testd.uk.log'));
    assert.match(logged, /Gave back 2 unprocessed rows/);
    assert.doesNotMatch(logged, /Database not answering/, 'each write waited for, none left as unanswered');
  });

  it('lis_managerd stopped (SIGTERM) while its database hangs exits within its grace', async function () {
    this.timeout(60_000);
    const schedule = { stuck_jobs: null, bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };
    const config = t.writeConfig({ manager: { ...t.config.manager, schedule }, database: { ...t.config.database, ...SHORT_STOP_WAIT } });
    const run = spawnTs('bin/lis_managerd', ['--service', '--country', 'uk', '--config', config, '--metrics-port', '0']);
    cleanups.push(() => void (run.child.exitCode === null && run.child.kill('SIGKILL')));
    await waitFor(
      async () => {
        const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM workers WHERE component = 'managerd' AND stopped_at IS NULL`.execute(t.db);
        return Number(rows[0].n) === 1;
      },
      30_000,
      'the manager registered',
    );
    // The server keeps the connection and answers nothing on workers, where the stop marks the manager stopped.
    const session = new pg.Client({ connectionString: t.url });
    await session.connect();
    cleanups.push(() => session.end().catch(() => {}));
    await session.query('BEGIN');
    await session.query('LOCK TABLE workers IN ACCESS EXCLUSIVE MODE');
    const signalled = Date.now();
    run.child.kill('SIGTERM');
    const exit = await Promise.race([run.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000).unref())]);
    assert.ok(exit, `still running ${Math.round((Date.now() - signalled) / 1000)} s after SIGTERM:\n${run.output()}`);
    assert.equal(exit.code, 0, run.output());
  });

  it('lis_managerd: a check whose database hangs fails, said as such, and the schedule goes on (it ran again once the path was back)', async function () {
    this.timeout(120_000);
    const relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    const schedule = { stuck_jobs: '* * * * * *', bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };
    const config = t.writeConfig({ database: { ...t.config.database, url: relay.url, ...TEST_DATABASE_BOUNDS }, manager: { ...t.config.manager, schedule } });
    const run = spawnTs('bin/lis_managerd', ['--service', '--country', 'uk', '--config', config, '--metrics-port', '0']);
    cleanups.push(() => void (run.child.exitCode === null && run.child.kill('SIGKILL')));
    const logFile = path.join(t.config.log.dir, 'managerd.uk.log');
    const log = () => readLogIfAny(logFile);
    const checksDone = () => log().match(/INFO Manager::stuck_jobs\b.*$/gm)?.length ?? 0;
    await waitFor(() => checksDone() > 0, 30_000, 'a stuck_jobs check done');
    await relay.cut();
    const hole = await blackHole(relay.port);
    cleanups.push(() => hole.close());
    // The config's connect bound (1 s here, 10 s by default): the check ends, rather than holding its schedule (noOverlap) for ever.
    await waitFor(
      () => /ERROR Manager::stuck_jobs\b.*stuck_jobs failed: the database at .* is not answering: no answer to a connect in 1 s/.test(log()),
      40_000,
      'the hung check ended',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; the log:\n${log()}`);
    });
    const before = checksDone();
    await hole.close();
    await relay.restore();
    await waitFor(() => checksDone() > before, 40_000, 'stuck_jobs done again once the path is back');
  });
});
