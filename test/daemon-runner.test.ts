import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import type { StageWorker } from '../src/daemon/run-daemon.ts';
import { metricsUrlFile } from '../src/config/metrics-ports.ts';
import { closeLogger } from '../src/log/create-logger.ts';
import { capturedLogger } from './helpers/captured-log.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { runByHand } from './helpers/run-by-hand.ts';
import { readLog } from './helpers/log-files.ts';

const DAEMON = 'test/fixtures/test-daemon.ts';

describe('daemon runner (a real daemon process)', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('a run by hand works until no rows are gained, says so, logs to its files and exits 0', async () => {
    await insertUrls(t.db, 'uk', 1200);
    await insertUrls(t.db, 'uk', 3, { prefix: 'http://images.example.com/bad/' });
    const config = t.writeConfig();
    const run = spawnTs(DAEMON, ['--country', 'UK', '--config', config, '--chunk-size', '500']);
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.deepEqual(await countBy(t.db), { 'download/failed': 3, 'thumbnail/waiting': 1200 }, run.output());
    const failed = await t.db.selectFrom('live_images').select(['last_error', 'last_error_class']).where('state', '=', 'failed').execute();
    assert.ok(failed.every((f) => f.last_error === 'HTTP 404 Not Found (fixture)' && f.last_error_class === 'http_404'));
    const screen = run.output();
    assert.match(screen, /^[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} INFO Test::get_chunk_of_work\[\d+\]:UK Doing chunk of work for UK \(size 500\)$/m);
    assert.match(screen, /INFO Test::get_chunk_of_work\[\d+\]:UK No rows gained\. No work to do\.$/m);
    assert.match(screen, /Exiting\(time_to_die: 0\)$/m);
    const logFile = readLog(path.join(t.config.log.dir, 'testd.uk.log'));
    assert.match(logFile, /Doing chunk of work for UK \(size 203\)/);
    assert.ok(fs.existsSync(path.join(t.config.log.dir, 'testd.uk.error.log')));
    const worker = await t.db.selectFrom('workers').selectAll().executeTakeFirstOrThrow();
    assert.equal(worker.component, 'testd');
    assert.equal(worker.country, 'uk');
    assert.equal(Number(worker.rows_done), 1200);
    assert.equal(Number(worker.rows_failed), 3);
    assert.ok(worker.stopped_at);
  });

  it('a run by hand does not end while a chunk is giving back its rows: it claims them again once they are back, and works them', async () => {
    await insertUrls(t.db, 'uk', 20);
    const { log, lines } = capturedLogger('testd', t.config.log);
    let chunks = 0;
    // The first chunk reports nothing (a stage cut short), so the runner gives its rows back. The test holds a
    // lock on one of them until the runner has claimed after the chunk ended: the give-back waits meanwhile, as
    // a slow one would, and the claim finds nothing.
    let unblock!: () => void;
    const blocked = new Promise<void>((resolve) => (unblock = resolve));
    let holding: Promise<void> = Promise.resolve();
    const stage: StageWorker = {
      component: 'testd',
      scope: 'Test',
      stage: 'download',
      async processChunk(rows, ctx) {
        if (++chunks > 1) {
          for (const row of rows) ctx.report({ ok: true, row: { id: row.id } });
          return;
        }
        let taken!: () => void;
        const lockTaken = new Promise<void>((resolve) => (taken = resolve));
        holding = t.db.transaction().execute(async (trx) => {
          await sql`SELECT id FROM live_images WHERE id = ${rows[0].id} FOR UPDATE`.execute(trx);
          taken();
          await blocked;
        });
        await lockTaken;
      },
    };
    const claims: number[] = [];
    try {
      await runByHand(stage, t, log, {
        observer: {
          onClaim: (_stage, _seconds, rows) => {
            claims.push(rows);
            if (chunks === 1 && rows === 0) unblock();
          },
          onResult: () => {},
          onHeartbeat: () => {},
        },
      });
    } finally {
      unblock();
      await holding;
      await closeLogger(log);
    }
    assert.deepEqual(await countBy(t.db), { 'thumbnail/waiting': 20 }, lines.join('\n'));
    assert.equal(chunks, 2, 'the rows given back were claimed again by the same run');
    assert.equal(claims.filter((n) => n === 20).length, 2, JSON.stringify(claims));
    const given = lines.findIndex((l) => l === 'INFO Gave back 20 unprocessed rows');
    const end = lines.findIndex((l) => l === 'INFO No rows gained. No work to do.');
    assert.ok(given >= 0 && end > given, lines.join('\n'));
  });

  it('on SIGTERM mid-chunk it finishes the row in hand, gives back the rest of the chunk and exits', async () => {
    await insertUrls(t.db, 'uk', 300);
    const run = spawnTs(DAEMON, ['--country', 'uk', '--config', t.writeConfig()], { TEST_ROW_MS: '20' });
    await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] >= 100, 30_000, '100 rows done');
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    const counts = await countBy(t.db);
    assert.equal(counts['download/waiting/locked'], undefined, `no row stays locked: ${JSON.stringify(counts)}`);
    assert.ok(counts['thumbnail/waiting'] >= 100 && counts['thumbnail/waiting'] < 300, JSON.stringify(counts));
    assert.equal(counts['thumbnail/waiting'] + counts['download/waiting'], 300);
    assert.match(run.output(), /SIGTERM received/);
    assert.match(run.output(), /Gave back \d+ unprocessed rows/);
    assert.match(run.output(), /Exiting\(time_to_die: 1\)/);
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM live_images WHERE attempts > 0`.execute(t.db);
    assert.equal(Number(rows[0].n), 0, 'giving rows back costs them no attempt');
  });

  it('a second SIGTERM exits at once, leaving what it held to the manager; a run by hand after it names the rows held', async () => {
    await insertUrls(t.db, 'uk', 50);
    const run = spawnTs(DAEMON, ['--country', 'uk', '--config', t.writeConfig()], { TEST_ROW_MS: '60000' });
    await waitFor(async () => ((await countBy(t.db))['download/waiting/locked'] ?? 0) === 50, 30_000, 'the chunk claimed');
    run.child.kill('SIGTERM');
    await waitFor(() => /SIGTERM received/.test(run.output()), 10_000, 'the first signal seen');
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    assert.equal(code, 143, run.output());
    assert.match(run.output(), /SIGTERM again: exiting now/);
    assert.equal((await countBy(t.db))['download/waiting/locked'], 50, 'still held: the manager releases them once the heartbeat is stale');
    // The operator runs it again: before, it said only "No rows gained. No work to do." and the 50 rows went unmentioned.
    const again = spawnTs(DAEMON, ['--country', 'uk', '--config', t.writeConfig()]);
    assert.equal((await again.exited).code, 0, again.output());
    assert.match(
      again.output(),
      /WARN .*No rows gained\. No work to do\. 50 rows are held by another worker, [^ ]+:\d+:[0-9a-f]+ \(last heartbeat \d+s ago\): if it is gone, lis_managerd releases them once it has been silent 60s \(manager\.staleWorkerSeconds\)\.$/m,
    );
  });

  it('in service mode an idle daemon wakes at once when the ETL adds rows (LISTEN/NOTIFY, not the poll)', async () => {
    const runDir = path.join(t.dir, 'run');
    const config = t.writeConfig({ queue: { pollSeconds: 120 }, services: { runDir } });
    // Its metrics (on a port it picks) tell when its first claim has come back empty: the runner then waits for
    // work in the same tick (LISTEN is set up before that claim). A notification sent before it waits is lost,
    // and the rows would wait for the 120 s poll: the rows go in only once it waits, not after a fixed pause.
    const run = spawnTs(DAEMON, ['--country', 'uk', '--config', config, '--service', '--metrics-port', '0']);
    try {
      await waitFor(async () => (await t.db.selectFrom('workers').select('id').execute()).length === 1, 20_000, 'the daemon to register');
      const urlFile = metricsUrlFile(runDir, 'testd', 'uk');
      await waitFor(() => fs.existsSync(urlFile), 20_000, 'the metrics URL');
      const url = fs.readFileSync(urlFile, 'utf8').trim();
      await waitFor(
        async () => /^lis_claim_seconds_count\{[^}]*\} [1-9]/m.test(await (await fetch(url)).text()),
        20_000,
        'the first claim, empty, so that the daemon waits for work',
      );
      const started = Date.now();
      await insertUrls(t.db, 'uk', 5);
      await waitFor(async () => (await countBy(t.db))['thumbnail/waiting'] === 5, 10_000, 'rows worked');
      assert.ok(Date.now() - started < 5000, 'woken by the notification, well before the 120 s poll');
    } finally {
      run.child.kill('SIGTERM');
      const { code } = await run.exited;
      assert.equal(code, 0, run.output());
    }
    assert.equal(readLog(path.join(t.config.log.dir, 'testd.uk.log')).includes('service mode'), true);
  });

  it('rejects bad flags and bad config with a clear message and a non-zero exit', async () => {
    // Eight processes that each only start and refuse: started together, then checked one by one.
    // A bad --metrics-port is refused before anything starts: with the database unreachable, the flag is still what is named.
    const unreachable = t.writeConfig({ database: { url: 'postgres://imagesys:x@127.0.0.1:1/nowhere' } });
    const badFile = path.join(t.dir, 'bad.json');
    fs.writeFileSync(badFile, JSON.stringify({ queue: { chunkSize: -1 }, stores: { sharedd: true } }));
    const noCountry = spawnTs(DAEMON, ['--config', t.writeConfig()]);
    const unknownFlag = spawnTs(DAEMON, ['--country', 'uk', '--colour', 'red']);
    const help = spawnTs(DAEMON, ['--help']);
    const badChunk = spawnTs(DAEMON, ['--country', 'uk', '--chunk-size', 'lots', '--config', t.writeConfig()]);
    const badPort = spawnTs(DAEMON, ['--country', 'uk', '--metrics-port', '99999', '--config', unreachable]);
    const managerPort = spawnTs('bin/lis_managerd', ['--service', '--metrics-port', 'x', '--config', unreachable]);
    const badConfig = spawnTs(DAEMON, ['--country', 'uk', '--config', badFile]);
    const managerBoth = spawnTs('bin/lis_managerd', ['--service', '--check', 'stuck_jobs', '--config', unreachable]);
    assert.equal((await noCountry.exited).code, 2, 'every usage error exits 2');
    assert.match(noCountry.output(), /required option '--country <code>' not specified/);
    assert.equal((await unknownFlag.exited).code, 2);
    assert.match(unknownFlag.output(), /unknown option '--colour'/);
    assert.equal((await help.exited).code, 0);
    assert.match(help.output(), /--country <code>/);
    assert.equal((await badChunk.exited).code, 2);
    assert.match(badChunk.output(), /--chunk-size "lots": expected a whole number from 1 to 10000/);
    assert.equal((await badPort.exited).code, 2, badPort.output());
    assert.equal(badPort.output(), 'error: --metrics-port "99999": expected a whole number from 0 to 65535\n');
    assert.equal((await managerPort.exited).code, 2, managerPort.output());
    assert.equal(managerPort.output(), 'error: --metrics-port "x": expected a whole number from 0 to 65535\n');
    assert.equal((await managerBoth.exited).code, 2, managerBoth.output());
    assert.match(managerBoth.output(), /option '--check <name>' cannot be used with option '--service'/);
    assert.equal((await badConfig.exited).code, 1);
    assert.match(badConfig.output(), /queue\.chunkSize: Too small/);
    assert.match(badConfig.output(), /stores\.sharedd: unknown key; did you mean stores\.shared\?/);
  });
});
