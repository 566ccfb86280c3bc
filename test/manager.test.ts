import assert from 'node:assert/strict';
import { PACKAGE_VERSION } from '../src/util/package-root.ts';
import { createDb } from '../src/db/connect.ts';
import http from 'node:http';
import path from 'node:path';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { runCheck } from '../src/manager/run-check.ts';
import { sql } from 'kysely';
import { parkBadRetryJobs } from '../src/manager/bad-retry-jobs.ts';
import { disableBadDatasources, judgeDatasource } from '../src/manager/bad-datasources.ts';
import { disableDatasource, enableDatasource } from '../src/manager/datasource-switch.ts';
import { deferRows } from '../src/queue/defer-rows.ts';
import { releaseAllHeldBy, releaseRows } from '../src/queue/release-rows.ts';
import { redownloadFromGoneHosts, releaseStuckJobs } from '../src/manager/stuck-jobs.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { claimRow } from '../src/queue/claim-row.ts';
import { enqueueRows, enqueueUnseenRows } from '../src/queue/enqueue-rows.ts';
import { failRows } from '../src/queue/fail-rows.ts';
import { insertOriginRow } from '../src/queue/origin-rows.ts';
import { settleMissedOriginRows } from '../src/manager/missed-origin-rows.ts';
import { countBy, insertUrls, relistAll } from './helpers/rows.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { raceWhileHeld } from './helpers/forced-race.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { serverUpFor } from './helpers/server-uptime.ts';
import { readLog } from './helpers/log-files.ts';

const DAEMON = 'test/fixtures/test-daemon.ts';

/**
 * The stale limit the SIGKILL test releases a dead worker at. Only a killed worker's silence has to outlast it (no
 * live worker is judged by it), so it can be short: the test waits it out, and 5 s cost the suite 3 s for nothing.
 * (releaseStuckJobs is called directly: manager.staleWorkerSeconds' minimum of 5 s is for the service.)
 */
const DEAD_SILENCE_SECONDS = 2;

/**
 * The stale limit the slow worker's rows are held past (releaseStuckJobs called directly, as above): its heartbeat
 * (0.5 s here) is what keeps it alive, so a short limit proves as much; the test waits past it, and 5 s cost 2 s more.
 */
const SLOW_STALE_SECONDS = 3;

/** Test-only audit: one line per row each time it leaves the download stage. */
async function auditStageMoves(t: TestDatabase): Promise<void> {
  await sql`
    CREATE TABLE stage_moves (id bigint, at timestamptz DEFAULT clock_timestamp());
    CREATE FUNCTION audit_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO stage_moves (id) VALUES (NEW.id); RETURN NULL; END $$;
    CREATE TRIGGER audit_move AFTER UPDATE ON live_images FOR EACH ROW
      WHEN (OLD.stage = 'download' AND NEW.stage <> 'download') EXECUTE FUNCTION audit_move();`.execute(t.db);
}

/**
 * `count` rows of datasource `ds` that failed with `errorClass` (as a stage leaves them), and the daemons'
 * per-minute outcome counts for them: `outcomesPerRow` failures each, e.g. a push retried 23 times.
 */
async function failedRows(t: TestDatabase, ds: number, count: number, errorClass: string, stage = 'download', outcomesPerRow = 23): Promise<void> {
  await insertUrls(t.db, 'uk', count, { datasourceId: ds, prefix: `http://feed${ds}.example.com/failing/` });
  await sql`UPDATE live_images SET stage = ${stage}, attempts = 1, last_error = 'fixture', last_error_class = ${errorClass}, updated_at = now()
             WHERE datasource_id = ${ds} AND image_url LIKE '%/failing/%'`.execute(t.db);
  await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n)
            VALUES ('uk', ${ds}, date_trunc('minute', now()), ${stage}, ${errorClass}, ${count * outcomesPerRow})`.execute(t.db);
}

describe('lis_managerd', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase({ overrides: { queue: { heartbeatSeconds: 0.5 }, manager: { staleWorkerSeconds: 5 } } })));
  afterEach(async () => t.drop());

  it('releases the rows of a daemon killed with SIGKILL mid-chunk; another worker finishes them, none done twice', async function () {
    this.timeout(90_000);
    await auditStageMoves(t);
    await insertUrls(t.db, 'uk', 600);
    const config = t.writeConfig();
    const victim = spawnTs(DAEMON, ['--country', 'uk', '--config', config, '--chunk-size', '200'], { TEST_ROW_MS: '10' });
    // Killed as soon as it is seen mid-chunk with rows done and 60 or more still in hand (0.6 s of work at least):
    // killed after a separate wait for rows done, on a loaded machine it had sometimes finished its chunk and held
    // nothing when the signal came.
    await waitFor(
      async () => {
        const counts = await countBy(t.db);
        if ((counts['thumbnail/waiting'] ?? 0) < 150 || (counts['download/waiting/locked'] ?? 0) < 60) return false;
        victim.child.kill('SIGKILL');
        return true;
      },
      30_000,
      'some rows done and 60 in hand',
    );
    await victim.exited;
    const held = (await countBy(t.db))['download/waiting/locked'] ?? 0;
    assert.ok(held > 0, 'the killed daemon held rows');
    // Not yet stale: nothing is taken from it.
    assert.deepEqual(await releaseStuckJobs(t.db, 60), []);
    await waitFor(
      async () => {
        const { rows } = await sql<{
          stale: boolean;
        }>`SELECT bool_and(heartbeat_at < now() - make_interval(secs => ${DEAD_SILENCE_SECONDS})) AS stale FROM workers WHERE stopped_at IS NULL AND component = 'testd'`.execute(
          t.db,
        );
        return rows[0].stale === true;
      },
      20_000,
      `the killed worker silent for over ${DEAD_SILENCE_SECONDS} s`,
    );
    await serverUpFor(t.db, DEAD_SILENCE_SECONDS);
    // Two managers (two hosts) find the dead worker at once: only one releases its rows and records it.
    const second = createDb(t.url, 1);
    const [first, other] = await Promise.all([releaseStuckJobs(t.db, DEAD_SILENCE_SECONDS), releaseStuckJobs(second, DEAD_SILENCE_SECONDS)]).finally(() =>
      second.destroy(),
    );
    const released = [...first, ...other];
    assert.equal(released.length, 1);
    assert.equal(released[0].rows, held, 'every row it held was released');
    assert.equal(released[0].component, 'testd');
    const events = await t.db.selectFrom('manager_events').selectAll().execute();
    assert.equal(events.length, 1);
    assert.equal(events[0].rows, held);
    const rescuer = spawnTs(DAEMON, ['--country', 'uk', '--config', config]);
    assert.equal((await rescuer.exited).code, 0, rescuer.output());
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 600 });
    const { rows } = await sql<{ moves: string; rows: string }>`SELECT count(*) AS moves, count(DISTINCT id) AS rows FROM stage_moves`.execute(t.db);
    assert.deepEqual(rows[0], { moves: '600', rows: '600' }, 'each row finished exactly once');
  });

  it('never takes the rows of a slow worker that is still alive', async function () {
    this.timeout(60_000);
    await insertUrls(t.db, 'uk', 20);
    const slow = spawnTs(DAEMON, ['--country', 'uk', '--config', t.writeConfig(), '--service'], { TEST_ROW_MS: '60000' });
    try {
      await waitFor(async () => ((await countBy(t.db))['download/waiting/locked'] ?? 0) === 20, 20_000, 'the chunk claimed');
      // Held for longer than the stale limit, beating all along (every 0.5 s: six beats to a limit).
      await waitFor(
        async () => {
          const { rows } = await sql<{
            held: boolean;
          }>`SELECT bool_and(locked_at < now() - make_interval(secs => ${SLOW_STALE_SECONDS + 1})) AS held FROM live_images`.execute(t.db);
          return rows[0].held === true;
        },
        20_000,
        `the chunk held for over ${SLOW_STALE_SECONDS + 1} s`,
      );
      assert.deepEqual(await releaseStuckJobs(t.db, SLOW_STALE_SECONDS), [], 'its heartbeat keeps it alive');
      assert.equal((await countBy(t.db))['download/waiting/locked'], 20);
    } finally {
      slow.child.kill('SIGKILL');
      await slow.exited;
    }
  });

  it('disables a datasource whose downloads all fail, parks its rows (new ones too), and re-enables it', async function () {
    this.timeout(60_000);
    await insertUrls(t.db, 'uk', 40, { datasourceId: 7, prefix: 'http://feed7.example.com/bad/' });
    await insertUrls(t.db, 'uk', 40, { datasourceId: 8, prefix: 'http://feed8.example.com/ok/' });
    await insertUrls(t.db, 'uk', 30, { datasourceId: 7, prefix: 'http://feed7.example.com/later/' });
    await sql`UPDATE live_images SET next_attempt_at = now() + interval '1 hour' WHERE image_url LIKE '%/later/%'`.execute(t.db);
    await relistAll(t.db);
    await sql`INSERT INTO datasources (country, datasource_id, updated_at) VALUES ('uk', 7, now() - interval '1 hour'), ('uk', 8, now() - interval '1 hour')`.execute(
      t.db,
    );
    const run = spawnTs(DAEMON, ['--country', 'uk', '--config', t.writeConfig()]);
    assert.equal((await run.exited).code, 0, run.output());
    const policy = { windowHours: 1, minAttempts: 20, failureRate: 0.9 };
    const disabled = await disableBadDatasources(t.db, policy, 'uk');
    assert.deepEqual(
      disabled.map((d) => [d.datasourceId, d.total, d.failed, d.parked]),
      [[7, 40, 40, 30]],
    );
    assert.match(disabled[0].reason, /100% of 40 rows failed in the last 1h \(top reason: http_404 on 40 rows\)/);
    const ds = await t.db.selectFrom('datasources').selectAll().where('datasource_id', '=', 7).executeTakeFirstOrThrow();
    assert.equal(ds.enabled, false);
    await insertUrls(t.db, 'uk', 5, { datasourceId: 7, prefix: 'http://feed7.example.com/new/' });
    const parked = await t.db
      .selectFrom('live_images')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('state', '=', 'parked')
      .executeTakeFirstOrThrow();
    assert.equal(Number(parked.n), 35, 'rows inserted for a disabled datasource are parked at once');
    const show = spawnTs('bin/lis', ['--config', t.writeConfig(), 'datasource', 'show', 'uk']);
    assert.equal((await show.exited).code, 0);
    assert.match(
      show.output(),
      /uk 7: .*\n {2}DISABLED: 100% of 40 rows failed in the last 1h \(top reason: http_404 on 40 rows\) \(lis datasource enable uk 7\)/,
    );
    const enable = spawnTs('bin/lis', ['--config', t.writeConfig(), 'datasource', 'enable', 'uk', '7']);
    assert.equal((await enable.exited).code, 0, enable.output());
    assert.match(enable.output(), /datasource 7 of uk enabled; 35 parked rows put back in the queue/);
    assert.deepEqual(await disableBadDatasources(t.db, policy, 'uk'), [], 'failures from before the re-enable do not count');
    assert.equal(await enableDatasource(t.db, 'uk', 999), null);
    const disable = spawnTs('bin/lis', ['--config', t.writeConfig(), 'datasource', 'disable', 'uk', '8', '--reason', 'feed sends watermarked photos']);
    assert.equal((await disable.exited).code, 0, disable.output());
    assert.match(disable.output(), /datasource 8 of uk disabled; 40 waiting rows parked/);
    const ds8 = await t.db.selectFrom('datasources').select(['enabled', 'disabled_reason']).where('datasource_id', '=', 8).executeTakeFirstOrThrow();
    assert.deepEqual(ds8, { enabled: false, disabled_reason: 'by hand: feed sends watermarked photos' });
    const unknown = spawnTs('bin/lis', ['--config', t.writeConfig(), 'datasource', 'enable', 'uk', '999']);
    assert.equal((await unknown.exited).code, 1);
    assert.match(unknown.output(), /no datasource 999 in uk/);
  });

  it('parks the rows that were being worked when their datasource was disabled, as they come back, and its re-opening resumes them', async () => {
    await sql`INSERT INTO datasources (country, datasource_id) VALUES ('uk', 61)`.execute(t.db);
    await insertUrls(t.db, 'uk', 6, { datasourceId: 61, prefix: 'http://feed61.example.com/' });
    const rows = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w:1:a', storeHost: '', limit: 6, afterId: '0' });
    assert.equal(rows.length, 6);
    // Disabled while all six are in hand: none is parked now (rows being worked finish as usual).
    assert.equal(await disableDatasource(t.db, 'uk', 61, 'bad feed'), 0);
    const [a, b, c, d, e, f] = rows.map((r) => r.id);
    // They come back: the feed failing again (retryable, and for good), our fault, a stop's give-back, a dead worker's release.
    const policy = { maxAttempts: 5, backoff: { baseSeconds: 0, maxSeconds: 0, jitter: 0 } };
    await failRows(
      t.db,
      'w:1:a',
      [
        { id: a, attempts: 0, reason: 'HTTP 503', errorClass: 'http_5xx', retryable: true },
        { id: b, attempts: 0, reason: 'HTTP 404', errorClass: 'http_404', retryable: false },
      ],
      policy,
    );
    await deferRows(t.db, 'w:1:a', [{ id: c, reason: 'store full', errorClass: 'store_write_failed', delaySeconds: 0 }]);
    await releaseRows(t.db, 'w:1:a', [d]);
    await sql`UPDATE live_images SET locked_by = 'w:2:b' WHERE id IN (${e}, ${f})`.execute(t.db);
    await releaseAllHeldBy(t.db, 'w:2:b');
    // Not one is claimable while the datasource is disabled: tried again, the bad feed's rows would end failed.
    assert.deepEqual(await countBy(t.db), { 'download/failed': 1, 'download/parked': 5 });
    assert.deepEqual(await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w:3:c', storeHost: '', limit: 6, afterId: '0' }), []);
    // Re-opened: all five wait again (the 404 stays failed, as before).
    assert.equal(await enableDatasource(t.db, 'uk', 61), 5);
    const again = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w:3:c', storeHost: '', limit: 6, afterId: '0' });
    assert.deepEqual(again.map((r) => r.id).sort(), [a, c, d, e, f].sort());
  });

  it('tells the operators through the webhook (and the error log) when it disables a datasource', async () => {
    const received: Array<Record<string, unknown>> = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', () => resolve()));
    try {
      const webhookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/alerts`;
      await sql`INSERT INTO datasources (country, datasource_id, updated_at) VALUES ('uk', 9, now() - interval '1 hour')`.execute(t.db);
      await failedRows(t, 9, 60, 'http_404');
      const config = { ...t.config, manager: { ...t.config.manager, webhookUrl, badDatasource: { windowHours: 1, minAttempts: 50, failureRate: 0.9 } } };
      const log = createLogger({ component: 'managerd', log: t.config.log, screen: false });
      const summary = await runCheck('bad_datasources', { config, db: t.db, log, country: 'uk' });
      await closeLogger(log);
      assert.match(summary, /bad_datasources: 1 disabled \(uk 9: 100% of 60 rows failed/);
      assert.equal(received.length, 1);
      assert.equal(received[0].subject, 'datasource 9 of UK disabled');
      assert.match(String(received[0].detail), /Re-open with: lis datasource enable uk 9/);
      assert.equal(received[0].source, 'imagesys');
      assert.match(readLog(path.join(t.config.log.dir, 'managerd.error.log')), /ERROR Manager::notify.*datasource 9 of UK disabled/);
    } finally {
      hook.close();
    }
  });

  it('counts rows, not outcomes: a row failing many times is one row, and our own faults never disable', async () => {
    await sql`INSERT INTO datasources (country, datasource_id, updated_at) VALUES ('uk', 11, now() - interval '1 hour'), ('uk', 12, now() - interval '1 hour'), ('uk', 13, now() - interval '1 hour')`.execute(
      t.db,
    );
    // 11: one frontend down for hours; 60 rows waiting to be pushed, 1380 failed pushes counted.
    await failedRows(t, 11, 60, 'frontend_down', 'push');
    // 12: one row failing over and over (100 outcomes), 59 rows fine.
    await failedRows(t, 12, 1, 'http_5xx', 'download', 100);
    await insertUrls(t.db, 'uk', 59, { datasourceId: 12, prefix: 'http://feed12.example.com/ok/' });
    await sql`UPDATE live_images SET stage = 'thumbnail' WHERE datasource_id = 12 AND last_error_class IS NULL`.execute(t.db);
    // 13: a feed of dead links, for contrast.
    await failedRows(t, 13, 60, 'http_404');
    const policy = { windowHours: 6, minAttempts: 50, failureRate: 0.9 };
    const disabled = await disableBadDatasources(t.db, policy, 'uk');
    assert.deepEqual(
      disabled.map((d) => [d.datasourceId, d.total, d.failed]),
      [[13, 60, 60]],
    );
    assert.equal(disabled[0].reason, '100% of 60 rows failed in the last 6h (top reason: http_404 on 60 rows)');
    const enabled = await t.db.selectFrom('datasources').select('datasource_id').where('enabled', '=', true).orderBy('datasource_id').execute();
    assert.deepEqual(
      enabled.map((d) => d.datasource_id),
      [11, 12],
    );
  });

  it('disables no datasource when most fail at once the same way: that is our network, not their feeds', async () => {
    await sql`INSERT INTO datasources (country, datasource_id, updated_at) SELECT 'uk', g, now() - interval '1 hour' FROM generate_series(21, 24) g`.execute(
      t.db,
    );
    // Our DNS resolver (or uplink) down during the nightly feed: every datasource's downloads fail as dns/connection.
    await failedRows(t, 21, 60, 'dns');
    await failedRows(t, 22, 60, 'dns');
    await failedRows(t, 23, 60, 'connection');
    // One datasource had its rows in before the outage.
    await insertUrls(t.db, 'uk', 60, { datasourceId: 24, prefix: 'http://feed24.example.com/ok/' });
    await sql`UPDATE live_images SET stage = 'thumbnail', updated_at = now() WHERE datasource_id = 24`.execute(t.db);
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n) VALUES ('uk', 24, date_trunc('minute', now()), 'download', '', 60)`.execute(
      t.db,
    );
    const policy = { windowHours: 6, minAttempts: 50, failureRate: 0.9 };
    assert.deepEqual(await disableBadDatasources(t.db, policy, 'uk'), []);
    assert.equal((await t.db.selectFrom('datasources').select('datasource_id').where('enabled', '=', false).execute()).length, 0);
    const events = await t.db.selectFrom('manager_events').select(['check_name', 'detail']).execute();
    assert.equal(events.length, 1);
    assert.match(events[0].detail ?? '', /^3 of 4 active datasources fail at once .*none disabled/);
    // One bad feed among healthy ones is still disabled.
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n)
              SELECT 'uk', g, date_trunc('minute', now()), 'download', '', 60 FROM generate_series(31, 34) g`.execute(t.db);
    await sql`INSERT INTO datasources (country, datasource_id) SELECT 'uk', g FROM generate_series(31, 34) g`.execute(t.db);
    await sql`UPDATE live_images SET last_error_class = NULL, updated_at = now() WHERE datasource_id IN (22, 23)`.execute(t.db);
    assert.deepEqual(
      (await disableBadDatasources(t.db, policy, 'uk')).map((d) => d.datasourceId),
      [21],
    );
  });

  it('disables no datasource when the biggest feed crosses the line first while the others fail as badly on fewer rows: our outage, not feed after feed', async () => {
    await sql`INSERT INTO datasources (country, datasource_id, updated_at) SELECT 'uk', g, now() - interval '1 hour' FROM generate_series(51, 54) g`.execute(
      t.db,
    );
    // Our DNS down: the biggest feed's nightly batch has 60 rows tried, the others 12 each so far, all failing.
    await failedRows(t, 51, 60, 'dns');
    await failedRows(t, 52, 12, 'dns');
    await failedRows(t, 53, 12, 'connection');
    // A feed whose rows were done before the outage.
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n) VALUES ('uk', 54, date_trunc('minute', now()), 'download', '', 60)`.execute(
      t.db,
    );
    const policy = { windowHours: 6, minAttempts: 50, failureRate: 0.9 };
    // Judged alone, 51 was disabled now, 52 and 53 at the runs after, as their rows reached 50.
    assert.deepEqual(await disableBadDatasources(t.db, policy, 'uk'), []);
    assert.equal((await t.db.selectFrom('datasources').select('datasource_id').where('enabled', '=', false).execute()).length, 0);
    const events = await t.db.selectFrom('manager_events').select('detail').execute();
    assert.deepEqual(
      events.map((e) => e.detail),
      ['3 of 4 active datasources fail at once (dns): our network, DNS or proxy, not their feeds; none disabled'],
    );
    // Once the others' rows go through, a dead feed among them is still disabled, though one still has failing rows (9 of 12).
    await sql`UPDATE live_images SET last_error_class = NULL, updated_at = now() WHERE datasource_id = 53
                 OR id IN (SELECT id FROM live_images WHERE datasource_id = 52 ORDER BY id LIMIT 3)`.execute(t.db);
    assert.deepEqual(
      (await disableBadDatasources(t.db, policy, 'uk')).map((d) => d.datasourceId),
      [51],
    );
  });

  it('two managers judging the same datasource at once disable it once: one event, one alert, and the second does not overwrite the first', async () => {
    await sql`INSERT INTO datasources (country, datasource_id, updated_at) VALUES ('uk', 41, now() - interval '1 hour')`.execute(t.db);
    await failedRows(t, 41, 60, 'http_404');
    const policy = { windowHours: 6, minAttempts: 50, failureRate: 0.9 };
    // Two hosts' managers on the same schedule: both read the figures, then both disable. The datasource's row is
    // held here until both wait on it, so that neither can see the other's disabling before it judges.
    const second = createDb(t.url, 1);
    try {
      const disabled = await raceWhileHeld(
        t,
        sql`SELECT 1 FROM datasources WHERE datasource_id = 41 FOR UPDATE`,
        () => Promise.all([disableBadDatasources(t.db, policy, 'uk'), disableBadDatasources(second, policy, 'uk')]),
        2,
        'both managers to wait on the datasource',
      );
      assert.deepEqual(disabled.map((d) => d.length).sort(), [0, 1]);
    } finally {
      await second.destroy();
    }
    const events = await t.db.selectFrom('manager_events').select('detail').where('check_name', '=', 'bad_datasources').execute();
    assert.equal(events.length, 1, JSON.stringify(events));
  });

  it('judges datasources by rate, only with enough attempts', () => {
    const policy = { windowHours: 6, minAttempts: 50, failureRate: 0.9 };
    const h = { country: 'uk', datasourceId: 1, total: 100, failed: 95, topReason: 'http_404', topReasonCount: 90 };
    assert.equal(judgeDatasource(h, policy), '95% of 100 rows failed in the last 6h (top reason: http_404 on 90 rows)');
    assert.equal(judgeDatasource({ ...h, failed: 80 }, policy), null);
    assert.equal(judgeDatasource({ ...h, total: 40, failed: 40 }, policy), null);
  });

  it("parks no row as failing the same way when its last failure was ours (the streak was the source's, the reason shown would be ours)", async () => {
    await insertUrls(t.db, 'uk', 2);
    // Four timeouts in a row, then given back uncharged because the store was full (deferRows keeps the streak):
    // parked now, it would read "failed 4 times in a row: store paused", and `lis retry --reason timeout` would miss it.
    await sql`UPDATE live_images SET attempts = 4, same_error_count = 4, last_error = 'store /srv/originals is 97% full', last_error_class = 'store_paused'
               WHERE id = (SELECT min(id) FROM live_images)`.execute(t.db);
    await sql`UPDATE live_images SET attempts = 4, same_error_count = 4, last_error = 'timed out', last_error_class = 'timeout'
               WHERE id = (SELECT max(id) FROM live_images)`.execute(t.db);
    const result = await parkBadRetryJobs(t.db, { maxAttempts: 6, sameReasonLimit: 4 });
    assert.equal(result.sameReason, 1, 'only the row whose streak is its own last failure');
    const { rows } = await sql<{ last_error_class: string; state: string }>`SELECT last_error_class, state FROM live_images ORDER BY id`.execute(t.db);
    assert.deepEqual(rows, [
      { last_error_class: 'store_paused', state: 'waiting' },
      { last_error_class: 'timeout', state: 'failed' },
    ]);
  });

  it('parks rows out of attempts or failing the same way, and `lis retry` puts them back', async () => {
    await insertUrls(t.db, 'uk', 6);
    await sql`UPDATE live_images SET attempts = 9, last_error = 'HTTP 503', last_error_class = 'http_5xx' WHERE id % 3 = 0`.execute(t.db);
    await sql`UPDATE live_images SET attempts = 2, same_error_count = 4, last_error = 'timed out', last_error_class = 'timeout' WHERE id % 3 = 1`.execute(t.db);
    await sql`UPDATE live_images SET stage = 'thumbnail', state = 'failed', last_error_class = 'original_missing', store_host = 'h' WHERE id % 3 = 2`.execute(
      t.db,
    );
    // A frontend's outage is not the row's fault: never parked, however long it lasts.
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, attempts, same_error_count, last_error_class)
              VALUES ('uk', 1, 'http://x.com/waits-for-n3.jpg', 'push', 40, 40, 'frontend_down')`.execute(t.db);
    // Out of attempts (queue.maxAttempts lowered), but last given back for our fault: not parked under our reason
    // (`lis retry --reason http_5xx` would miss it); its source's next try decides.
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, attempts, last_error, last_error_class)
              VALUES ('uk', 1, 'http://x.com/store-was-full.jpg', 'thumbnail', 9, 'ENOSPC', 'store_write_failed')`.execute(t.db);
    const result = await parkBadRetryJobs(t.db, { maxAttempts: 6, sameReasonLimit: 4 });
    assert.deepEqual(result, { outOfAttempts: 2, sameReason: 2, originalMissing: 2, thumbnailsMissing: 0 });
    await sql`DELETE FROM live_images WHERE stage = 'push' AND state = 'waiting'`.execute(t.db).then((r) => assert.equal(Number(r.numAffectedRows), 1));
    await sql`DELETE FROM live_images WHERE stage = 'thumbnail' AND state = 'waiting'`.execute(t.db).then((r) => assert.equal(Number(r.numAffectedRows), 1));
    assert.deepEqual(await countBy(t.db), { 'download/failed': 4, 'download/waiting': 2 });
    const run = spawnTs('bin/lis', ['--config', t.writeConfig(), 'retry', '--country', 'uk', '--reason', 'timeout']);
    assert.equal((await run.exited).code, 0, run.output());
    assert.match(run.output(), /2 failed rows put back in the queue/);
    assert.deepEqual(await countBy(t.db), { 'download/failed': 2, 'download/waiting': 4 });
  });

  it('`lis retry --reason` that matches nothing says so and lists the reasons failed rows have', async () => {
    await insertUrls(t.db, 'uk', 5);
    await sql`UPDATE live_images SET state = 'failed', last_error_class = CASE WHEN id % 5 = 0 THEN 'http_5xx' ELSE 'timeout' END`.execute(t.db);
    await relistAll(t.db);
    const lis = (...args: string[]) => spawnTs('bin/lis', ['--config', t.writeConfig(), 'retry', '--country', 'uk', ...args]);
    const typo = lis('--reason', 'timeot');
    assert.equal((await typo.exited).code, 0, typo.output());
    assert.match(typo.output(), /^0 failed rows put back in the queue$/m);
    assert.match(typo.output(), /no failed row \(country uk\) has reason "timeot"; the failed rows' reasons now: timeout \(4\), http_5xx \(1\)/);
    // Scoped as the retry was: nothing failed in the thumbnail stage.
    const elsewhere = lis('--reason', 'timeout', '--stage', 'thumbnail');
    assert.equal((await elsewhere.exited).code, 0, elsewhere.output());
    assert.match(elsewhere.output(), /no failed row \(country uk, stage thumbnail\) has reason "timeout"; no row there is failed/);
    assert.deepEqual(await countBy(t.db), { 'download/failed': 5 });
  });

  it('sends rows whose files were on a host gone too long back to download, once', async () => {
    await insertUrls(t.db, 'uk', 4);
    await sql`UPDATE live_images SET stage = 'push', store_host = 'oldhost' WHERE id <= (SELECT min(id) + 2 FROM live_images)`.execute(t.db);
    await relistAll(t.db);
    await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at, stopped_at) VALUES ('oldhost:1', 'thumbnaild', 'oldhost', 1, now() - interval '3 days', now() - interval '3 days')`.execute(
      t.db,
    );
    // One of them held by the gone host's worker when it died.
    assert.equal((await claimChunk(t.db, { country: 'uk', stage: 'push', workerId: 'oldhost:1', storeHost: 'oldhost', limit: 1, afterId: '0' })).length, 1);
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [{ host: 'oldhost', rows: 3 }]);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 4 });
    const again = await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: 'w', storeHost: '', limit: 10, afterId: '0' });
    assert.equal(again.length, 4, 'all four claimable again, the one the dead worker held included');
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost'), [], 'handled once');
  });

  it("a manager run with --country sends back only its country's rows from a gone host; the other country's manager does its own", async () => {
    await insertUrls(t.db, 'uk', 3);
    await insertUrls(t.db, 'de', 2);
    await sql`UPDATE live_images SET stage = 'push', store_host = 'oldhost'`.execute(t.db);
    await relistAll(t.db);
    await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at, stopped_at) VALUES ('oldhost:1', 'thumbnaild', 'oldhost', 1, now() - interval '3 days', now() - interval '3 days')`.execute(
      t.db,
    );
    // As lis_managerd --country uk runs it: through its stuck_jobs check.
    const log = createLogger({ component: 'managerd', log: t.config.log, screen: false });
    try {
      const summary = await runCheck('stuck_jobs', {
        config: { ...t.config, manager: { ...t.config.manager, hostGoneHours: 24 } },
        db: t.db,
        log,
        country: 'uk',
      });
      assert.match(summary, /1 gone hosts, 3 rows to download again$/);
    } finally {
      await closeLogger(log);
    }
    assert.deepEqual(await countBy(t.db, sql`country = 'uk'`), { 'download/waiting': 3 });
    assert.deepEqual(await countBy(t.db, sql`country = 'de'`), { 'push/waiting': 2 }, "the other country's rows are not this manager's");
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost', 'uk'), [], 'handled once for uk');
    // The de manager is not kept from its own rows by the uk manager's handling of the host.
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost', 'de'), [{ host: 'oldhost', rows: 2 }]);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 5 });
    assert.deepEqual(await redownloadFromGoneHosts(t.db, 24, 'testhost', 'de'), [], 'handled once for de');
    const events = await t.db.selectFrom('manager_events').select(['country', 'subject', 'rows']).where('check_name', '=', 'host_gone').orderBy('id').execute();
    assert.deepEqual(events, [
      { country: 'uk', subject: 'oldhost', rows: 3 },
      { country: 'de', subject: 'oldhost', rows: 2 },
    ]);
  });

  it('two managers (two hosts) finding the same gone host at once send its rows back once and record it once', async () => {
    await insertUrls(t.db, 'uk', 3);
    await sql`UPDATE live_images SET stage = 'push', store_host = 'oldhost'`.execute(t.db);
    await relistAll(t.db);
    await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at, stopped_at) VALUES ('oldhost:1', 'thumbnaild', 'oldhost', 1, now() - interval '3 days', now() - interval '3 days')`.execute(
      t.db,
    );
    // The gone host's rows are held here until both managers wait (on them, or on each other): both have found the
    // host gone before either has sent anything back or recorded it.
    const second = createDb(t.url, 1);
    try {
      const runs = await raceWhileHeld(
        t,
        sql`SELECT 1 FROM live_images FOR UPDATE`,
        () => Promise.all([redownloadFromGoneHosts(t.db, 24, 'testhost'), redownloadFromGoneHosts(second, 24, 'testhost')]),
        2,
        'both managers to wait on the gone host',
      );
      assert.deepEqual(runs.flat(), [{ host: 'oldhost', rows: 3 }]);
    } finally {
      await second.destroy();
    }
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 3 });
    const events = await t.db.selectFrom('manager_events').select(['subject', 'rows']).where('check_name', '=', 'host_gone').execute();
    assert.deepEqual(events, [{ subject: 'oldhost', rows: 3 }]);
  });

  it('`lis_managerd --check` runs one check by hand; `lis worker-report` lists the workers', async function () {
    this.timeout(60_000);
    await insertUrls(t.db, 'uk', 50);
    const config = t.writeConfig();
    const daemon = spawnTs(DAEMON, ['--country', 'uk', '--config', config]);
    assert.equal((await daemon.exited).code, 0);
    const check = spawnTs('bin/lis_managerd', ['--check', 'stuck_jobs', '--country', 'uk', '--config', config]);
    assert.equal((await check.exited).code, 0, check.output());
    assert.match(check.output(), /INFO Manager::stuck_jobs\[\d+\]:UK stuck_jobs: 0 dead workers, 0 rows released/);
    const report = spawnTs('bin/lis', ['--config', config, 'worker-report']);
    assert.equal((await report.exited).code, 0, report.output());
    assert.match(report.output(), /component\s+host\s+pid\s+country\s+status\s+release\s+started/);
    // Each worker's release, as it registered (a rolling upgrade shows who still runs the older one).
    const release = PACKAGE_VERSION.replaceAll('.', '\\.');
    assert.match(report.output(), new RegExp(`^testd\\s+testhost\\s+\\d+\\s+uk\\s+stopped\\s+${release}\\s+.*\\s50\\s+0\\s+0$`, 'm'));
    const json = spawnTs('bin/lis', ['--config', config, 'worker-report', '--json']);
    assert.equal((await json.exited).code, 0, json.output());
    assert.deepEqual(
      (JSON.parse(json.output()) as Array<{ release: string | null }>).map((w) => w.release),
      [PACKAGE_VERSION],
    );
  });
});

describe('lis_managerd: missed_origin_rows', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());
  const POLICY = { maxAttempts: 5, backoff: { baseSeconds: 0, maxSeconds: 0, jitter: 0 } };
  const url = (key: string) => `s3://photos/${key}`;

  /** One download of the row, ended as a lis_downloadd ends it: claimed, then failed with `errorClass`. */
  async function failDownload(id: string, errorClass: string, retryable = false): Promise<void> {
    const row = await claimRow(t.db, id, 'test:downloadd', '');
    assert.ok(row, `row ${id} claimable`);
    await failRows(t.db, 'test:downloadd', [{ id, attempts: row.attempts, reason: errorClass, errorClass, retryable }], POLICY);
  }
  const origin = async (key: string, country = 'uk') => (await insertOriginRow(t.db, country, 3, url(key)))!;
  const left = async () => (await t.db.selectFrom('live_images').select('image_url').orderBy('image_url').execute()).map((r) => r.image_url);

  it('deletes the rows of origin keys whose download found no key, whoever failed them, and nothing a listing named, still in play, or ever downloaded', async () => {
    await failDownload(await origin('gone-404.jpg'), 'http_404');
    await failDownload(await origin('gone-410.jpg'), 'http_410');
    const late = await origin('gone-after-timeout.jpg');
    await failDownload(late, 'timeout', true);
    await failDownload(late, 'http_404');
    // Kept: a passing failure (retried), a row a worker holds, a 404 of a row the ETL named (before or after the
    // request), a row once downloaded (its files are the purge's to delete), another country's with --country.
    await failDownload(await origin('retrying.jpg'), 'timeout', true);
    assert.ok(await claimRow(t.db, await origin('held.jpg'), 'test:downloadd', ''));
    const named = await origin('named-later.jpg');
    await enqueueRows(t.db, 'uk', [{ datasourceId: 3, url: url('named-later.jpg') }]);
    await failDownload(named, 'http_404');
    await enqueueRows(t.db, 'uk', [{ datasourceId: 3, url: url('etl.jpg') }]);
    const etl = await t.db.selectFrom('live_images').select('id').where('image_url', '=', url('etl.jpg')).executeTakeFirstOrThrow();
    assert.equal(await insertOriginRow(t.db, 'uk', 3, url('etl.jpg')), null);
    await failDownload(etl.id, 'http_404');
    const downloaded = await origin('downloaded-once.jpg');
    await failDownload(downloaded, 'http_404');
    await sql`UPDATE live_images SET downloaded_at = now() - interval '1 day' WHERE id = ${downloaded}::bigint`.execute(t.db);
    await failDownload(await origin('other-country.jpg', 'de'), 'http_404');

    const ctx = { config: t.config, db: t.db, log: createLogger({ component: 'managerd', log: t.config.log, screen: false, files: false }), country: 'uk' };
    try {
      assert.equal(await runCheck('missed_origin_rows', ctx), 'missed_origin_rows: 3 rows of origin keys the origin lacks deleted');
      const kept = ['downloaded-once.jpg', 'etl.jpg', 'held.jpg', 'named-later.jpg', 'other-country.jpg', 'retrying.jpg'].map(url);
      assert.deepEqual(await left(), kept);
      assert.equal(await runCheck('missed_origin_rows', { ...ctx, country: undefined }), 'missed_origin_rows: 1 rows of origin keys the origin lacks deleted');
      assert.deepEqual(
        await left(),
        kept.filter((u) => u !== url('other-country.jpg')),
      );
      assert.equal(await runCheck('missed_origin_rows', ctx), 'missed_origin_rows: 0 rows of origin keys the origin lacks deleted');
      const events = await t.db.selectFrom('manager_events').select(['check_name', 'country', 'rows']).orderBy('id').execute();
      assert.deepEqual(events, [
        { check_name: 'missed_origin_rows', country: 'uk', rows: 3 },
        { check_name: 'missed_origin_rows', country: null, rows: 1 },
      ]);
    } finally {
      await closeLogger(ctx.log);
    }
  });

  it('a listing that names the URL in a transaction begun before the request inserted the row still counts: the row is kept', async () => {
    await t.db.transaction().execute(async (trx) => {
      await sql`SELECT now()`.execute(trx);
      await origin('raced-listing.jpg');
      await enqueueRows(trx, 'uk', [{ datasourceId: 3, url: url('raced-listing.jpg') }]);
    });
    const row = await t.db
      .selectFrom('live_images')
      .select(['id', sql<boolean>`last_seen >= insert_time`.as('seen')])
      .executeTakeFirstOrThrow();
    assert.equal(row.seen, true, 'last_seen is never before the insert');
    await failDownload(row.id, 'http_404');
    assert.equal(await settleMissedOriginRows(t.db), 0);
    assert.deepEqual(await left(), [url('raced-listing.jpg')]);
  });

  it('deletes any number of them, a thousand rows per statement', async () => {
    const keys = Array.from({ length: 2100 }, (_, i) => ({ datasourceId: 3, url: url(`random-${i}.jpg`) }));
    assert.equal((await enqueueUnseenRows(t.db, 'uk', keys)).length, 2100);
    // As 2100 downloads leave them (failRows, one statement for the lot).
    const ids = (await t.db.selectFrom('live_images').select('id').execute()).map((r) => r.id);
    await sql`UPDATE live_images SET locked_by = 'test:downloadd', locked_at = now()`.execute(t.db);
    const failures = ids.map((id) => ({ id, attempts: 0, reason: 'HTTP 404', errorClass: 'http_404', retryable: false }));
    assert.equal((await failRows(t.db, 'test:downloadd', failures, POLICY)).failed, 2100);
    assert.equal(await settleMissedOriginRows(t.db, 'uk'), 2100);
    assert.deepEqual(await left(), []);
  });
});
