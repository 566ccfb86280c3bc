// lis_cron_frontend's scans have no query bound (a purge may rightly take an hour), so a database server that
// freezes under one (its processes stopped, its host hung: the connection kept, nothing answering) held the run,
// and its locks, for ever. The run probes the server on connections of its own: one busy with the scan answers,
// and the scan goes on however long; one that answers nothing for upkeep.frozenDatabaseMinutes has the run cut.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { parseConfig } from '../src/config/load-config.ts';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { databaseUrl, type Db } from '../src/db/connect.ts';
import { openDatabase } from '../src/db/open-database.ts';
import { embeddedStatus } from '../src/db/embedded-server.ts';
import { holderName, takeClusterPart } from '../src/cron/cluster-lock.ts';
import { settledWithin } from '../src/util/settled-within.ts';
import { afterProbe, isFrozen, probeEveryMs } from '../src/cron/database-watch.ts';
import { freezeServer } from './helpers/frozen-server.ts';
import { ROOT, spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { freePort } from './helpers/free-port.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.ts';
import { startDatabaseProxy, type DatabaseProxy } from './helpers/database-proxy.ts';
import { databasePerTest, type Cleanups, type TestDatabase } from './helpers/test-database.ts';
import { killServerAtExit } from './helpers/reap-children.ts';

/**
 * Short bounds, so that a test sees them: a probe's connect 2.5 s, the server judged frozen after 3 s of silence (and
 * three probes). A connect bound of 1 s was missed by a run's first connect (its SCRAM login and settings) on a loaded
 * machine (three test files at once on two cores, every core busy), and the run failed before its scan.
 */
const SHORT = {
  database: { connectTimeoutSeconds: 2.5, queryTimeoutSeconds: 1.5, stopWaitSeconds: 0.5 },
  upkeep: { frozenDatabaseMinutes: 0.05, progressMinutes: 0.05 },
};

describe('lis_cron_frontend against a database server that freezes', function () {
  this.timeout(180_000);
  let dir: string;
  let serverConfig: LisConfigInput;
  let db: Db;
  let url: string;
  let smtp: SmtpSink;
  const login = { user: 'ops', password: 'smtp-secret' };
  const cleanups: Cleanups = [];
  const lis = async (...args: string[]) => {
    const run = spawnTs('bin/lis', ['--config', path.join(dir, 'server.json'), ...args], { LIS_DATABASE_URL: '' });
    assert.equal((await run.exited).code, 0, run.output());
  };

  // A server of its own: the shared one is not ours to freeze.
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-frozen-'));
    serverConfig = { host: 'testhost', database: { embedded: { dataDir: path.join(dir, 'pg'), port: await freePort() } } };
    fs.writeFileSync(path.join(dir, 'server.json'), JSON.stringify(serverConfig));
    killServerAtExit(path.join(dir, 'pg'));
    await lis('db', 'start');
    const config = parseConfig(serverConfig, {}, dir, 'test config');
    db = await openDatabase(config);
    url = await databaseUrl(config);
    smtp = await startSmtpSink(login);
  });
  after(async () => {
    await db?.destroy();
    await smtp?.close();
    try {
      await lis('db', 'stop');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  beforeEach(async () => {
    await sql`TRUNCATE live_images, claimable_rows, frontend_pushes, manager_events`.execute(db);
    smtp.mails.length = 0;
    // Five UK rows the ETL has not listed for 40 days: db_scan purges them.
    await insertUrls(db, 'uk', 5);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(db);
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const configFile = (upkeep: LisConfigInput['upkeep'] = SHORT.upkeep) => {
    const file = path.join(dir, 'cron.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        ...serverConfig,
        database: { ...serverConfig.database, ...SHORT.database },
        upkeep,
        services: { runDir: path.join(dir, 'run') },
        stores: { originals: path.join(dir, 'originals'), thumbnails: path.join(dir, 'thumbnails') },
        log: { dir: path.join(dir, 'log') },
        alerts: { smtp: { host: '127.0.0.1', port: smtp.port, secure: false, ...login, to: ['ops@example.invalid'] } },
      }),
    );
    return file;
  };

  const cron = (...args: string[]): Spawned => cronWith(SHORT.upkeep, ...args);
  const cronWith = (upkeep: LisConfigInput['upkeep'], ...args: string[]): Spawned => {
    const run = spawnTs('bin/lis_cron_frontend', [...args, '--config', configFile(upkeep)]);
    cleanups.push(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    return run;
  };

  /** A session holding live_images' strongest lock, so that db_scan waits on it (a scan mid-way); `end` lets it go. */
  const holdTable = async () => {
    const session = new pg.Client({ connectionString: url });
    session.on('error', () => {});
    await session.connect();
    await session.query('BEGIN');
    await session.query('LOCK TABLE live_images IN ACCESS EXCLUSIVE MODE');
    let ended = false;
    const end = async () => {
      if (ended) return;
      ended = true;
      await session.query('ROLLBACK').catch(() => {});
      await session.end().catch(() => {});
    };
    cleanups.push(end);
    return end;
  };

  const scanWaitsOnLock = async () => {
    const { rows } = await sql`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'imagesys:%' AND wait_event_type = 'Lock'`.execute(db);
    return rows.length > 0;
  };

  const failWith = (run: Spawned) => (error: Error) => {
    throw new Error(`${error.message}:\n${run.output()}`);
  };

  it('a run whose server freezes mid-scan is cut within a deadline: exit 1, the error line, the alert; the next run takes the lock once it is back', async () => {
    const endHold = await holdTable();
    const run = cron('--db_scan', '--country', 'uk');
    await waitFor(scanWaitsOnLock, 30_000, 'db_scan waiting on the table').catch(failWith(run));
    const frozen = freezeServer(embeddedStatus(parseConfig(serverConfig, {}, dir, 'test config').database.embedded).pid!);
    cleanups.push(() => frozen.resume());

    await waitFor(() => run.child.exitCode !== null, 30_000, 'the run to end while the server is frozen').catch(failWith(run));
    assert.equal((await run.exited).code, 1, run.output());
    const out = run.output();
    assert.match(
      out,
      /UK: db_scan: the database did not answer a probe \(1 in a row, for [\d.]+ s: the database at 127\.0\.0\.1:\d+\/imagesys as imagesys is not answering: no answer to a connect in 2\.5 s\)/,
    );
    assert.match(
      out,
      /ERROR .*UK: the database at 127\.0\.0\.1:\d+\/imagesys as imagesys did not answer for [\d.]+ s \([3-9] probes in a row, the last: no answer to a connect in 2\.5 s\): cut UK: db_scan after [\d.]+ s\. Its connections were closed/,
    );
    assert.match(out, /^error: the database at .* did not answer for .*: cut UK: db_scan after/m);
    // The outcome could not reach the table, so the run told the operators itself.
    await waitFor(() => smtp.mails.length > 0, 10_000, 'the alert mail');
    assert.deepEqual(
      smtp.mails.map((m) => m.subject),
      ['[ImageSys] weekly upkeep failed for UK on testhost: the database did not answer'],
    );
    assert.match(smtp.mails[0].raw, /did not answer for/);

    frozen.resume();
    await endHold();
    // The run's sessions closed as it was cut: the server ends them, and the shared upkeep's lock, once it runs again.
    await waitFor(
      async () => (await sql`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'lis_cron_frontend on %'`.execute(db)).rows.length === 0,
      30_000,
      "the cut run's lock session to end",
    );
    assert.deepEqual(await countBy(db), { 'download/waiting': 5 }, 'no row was changed by the cut scan');
    const next = cron('--db_scan', '--country', 'uk');
    assert.equal((await next.exited).code, 0, next.output());
    assert.match(next.output(), /Summary for UK in [\d.]+s: db_scan: 5 purged/);
    assert.deepEqual(await countBy(db), {});
  });

  describe('closing connections while the server is frozen', () => {
    /**
     * A process of its own, as the commands and a listing page are: `setup` (a module body) connects and makes a
     * query; on a line of stdin `closing` runs. What failed was a process with its work done that did not exit, held
     * by a socket whose goodbye had been sent and whose close the frozen server never sent back.
     */
    async function closeWhileFrozen(setup: string, closing: string): Promise<{ code: number | null; out: string }> {
      const script = `${setup}
        process.stdout.write('ready\\n');
        process.stdin.once('data', async () => {
          ${closing};
          process.stdout.write('closed\\n');
          process.stdin.destroy();
        });`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: ROOT,
        env: { ...process.env, URL: url },
        stdio: 'pipe',
      });
      let out = '';
      child.stdout.on('data', (chunk) => (out += chunk));
      child.stderr.on('data', (chunk) => (out += chunk));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
      });
      await waitFor(() => out.includes('ready') || child.exitCode !== null, 30_000, 'the process connected');
      const frozen = freezeServer(embeddedStatus(parseConfig(serverConfig, {}, dir, 'test config').database.embedded).pid!);
      cleanups.push(() => frozen.resume());
      child.stdin.write('close\n');
      await waitFor(() => child.exitCode !== null, 10_000, 'the process to exit while the server is frozen').catch((error: Error) => {
        throw new Error(`${error.message}:\n${out}`);
      });
      return { code: await exited, out };
    }

    it("closeDb: the pool's idle connection is cut at the wait's end, and the process exits", async () => {
      const { code, out } = await closeWhileFrozen(
        `import { sql } from 'kysely';
        import { closeDb, createDb } from './src/db/connect.ts';
        const db = createDb(process.env.URL, 2);
        await sql\`SELECT 1\`.execute(db);`,
        'await closeDb(db, 300)',
      );
      assert.equal(code, 0, out);
      assert.match(out, /closed/);
    });

    it("the Interface's close(): its connections are cut at the connect bound, and the listing process exits", async () => {
      const { code, out } = await closeWhileFrozen(
        `import { ImageSys } from './src/interface/index.ts';
        const images = await ImageSys.open({ config: { database: { url: process.env.URL } }, bounds: { connectMs: 500, queryMs: 1000 } });
        await images.getSearchApiDataForHash('0'.repeat(32));`,
        'await images.close()',
      );
      assert.equal(code, 0, out);
      assert.match(out, /closed/);
    });
  });

  it("the upkeep's lock released while the server is frozen: the release ends within its bound, its socket cut, and the server drops the lock once it runs", async () => {
    const part = await takeClusterPart(url, db, 'uk', { host: 'testhost', pid: process.pid }, { connectMs: 1000, queryMs: 1000 }, () => {});
    assert.ok(part.held);
    const frozen = freezeServer(embeddedStatus(parseConfig(serverConfig, {}, dir, 'test config').database.embedded).pid!);
    cleanups.push(() => frozen.resume());
    // Before, the release waited for the server's close of the session, which a stopped server never sends.
    assert.ok(await settledWithin(part.release(), 10_000), 'the release still waits for the frozen server');
    frozen.resume();
    const name = holderName('testhost', process.pid);
    await waitFor(
      async () => (await sql`SELECT 1 FROM pg_stat_activity WHERE application_name = ${name}`.execute(db)).rows.length === 0,
      30_000,
      "the lock's session to end once the server runs",
    );
  });

  it('a server busy past the bound (the scan waiting on a lock) answers the probes: the scan is not cut, and finishes once the lock goes', async () => {
    const endHold = await holdTable();
    // A "still running" line every second, not every 3 s: the first past 7 s comes at 7 s, not at 9.
    const run = cronWith({ ...SHORT.upkeep, progressMinutes: 1 / 60 }, '--db_scan', '--country', 'uk');
    await waitFor(scanWaitsOnLock, 30_000, 'db_scan waiting on the table').catch(failWith(run));
    // Over twice upkeep.frozenDatabaseMinutes (3 s), as the run's own "still running" lines count it.
    await waitFor(() => /UK: db_scan still running after ([7-9]|\d\d+) s/.test(run.output()), 60_000, 'a scan held past the bound').catch(failWith(run));
    assert.equal(run.child.exitCode, null, run.output());
    assert.doesNotMatch(run.output(), /did not answer/);
    await endHold();
    assert.equal((await run.exited).code, 0, run.output());
    assert.match(run.output(), /Summary for UK in [\d.]+s: db_scan: 5 purged/);
    assert.deepEqual(await countBy(db), {});
  });
});

describe('lis_cron_frontend cut on a lost path to the database', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  let relay: DatabaseProxy;
  const cleanups = databasePerTest((made) => (t = made));

  beforeEach(async () => {
    relay = await startDatabaseProxy(t.url);
    cleanups.push(() => relay.cut());
    await insertUrls(t.db, 'uk', 5);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
  });

  /**
   * A run through the relay, with bounds that cut it soon once its path goes silent (its probes' connects are
   * bounded by connectTimeoutSeconds, SHORT's 2.5 s). `next`: a run that is to succeed after a cut, with the default
   * connect bound.
   */
  const cron = (...args: string[]): Spawned => runOf(SHORT.database, args);
  const next = (...args: string[]): Spawned => runOf({ ...SHORT.database, connectTimeoutSeconds: 10 }, args);
  const runOf = (bounds: typeof SHORT.database, args: string[]): Spawned => {
    const config = t.writeConfig({
      database: { url: relay.url, ...bounds },
      upkeep: SHORT.upkeep,
      services: { runDir: path.join(t.dir, 'run') },
    });
    const run = spawnTs('bin/lis_cron_frontend', [...args, '--config', config]);
    cleanups.push(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    return run;
  };

  /** A run cut once the path went silent under the scan's statement `at`: exit 1, said so. */
  const cutAt = async (at: string) => {
    const silent = relay.stallAfter(at);
    const run = cron('--db_scan', '--country', 'uk');
    // A run that ends before its scan reaches `at` (it could not connect) fails the test saying so, not by its timeout.
    const early = await Promise.race([silent.then(() => null), run.exited]);
    if (early) assert.fail(`the run ended (exit ${early.code}) before its scan sent ${at}:\n${run.output()}`);
    const { code } = await run.exited;
    assert.equal(code, 1, run.output());
    assert.match(run.output(), /did not answer for .*: cut UK: db_scan after/);
    relay.mend();
  };

  it("the next run of this host takes the shared upkeep from the cut run's session, which the server still keeps", async () => {
    await cutAt('last_seen <');
    // The server never heard of the close: the cut run's lock session is still there (its path is kept by the relay).
    const { rows } =
      await sql`SELECT 1 FROM pg_stat_activity WHERE datname = ${t.name} AND application_name LIKE 'lis_cron_frontend on testhost pid %'`.execute(t.db);
    assert.equal(rows.length, 1, 'the lock session kept');
    const after = next('--db_scan', '--country', 'uk');
    assert.equal((await after.exited).code, 0, after.output());
    assert.match(
      after.output(),
      /UK: took over the shared upkeep from lis_cron_frontend on testhost pid \d+ \(since .*\), a run of this host that is gone: its session ended/,
    );
    assert.match(after.output(), /Summary for UK in [\d.]+s: db_scan: 5 purged/);
    assert.deepEqual(await countBy(t.db), {});
  });

  it("a transaction the cut run left open on the server (its COMMIT never sent) is ended by the server: the next run's scan does not wait on its row locks", async () => {
    // The purge's delete ran, the five rows locked and deleted in its transaction; the answer, and the COMMIT, lost.
    await cutAt('WITH gone AS (DELETE FROM live_images');
    const after = next('--db_scan', '--country', 'uk');
    await waitFor(() => after.child.exitCode !== null, 30_000, 'the next run to end').catch((error: Error) => {
      throw new Error(`${error.message}:\n${after.output()}`);
    });
    assert.equal((await after.exited).code, 0, after.output());
    assert.match(after.output(), /Summary for UK in [\d.]+s: db_scan: 5 purged/);
    assert.deepEqual(await countBy(t.db), {});
  });
});

describe('judging a database frozen, from its probes', () => {
  const silent = { answered: false as const, error: new Error('no answer to a connect in 10 s') };
  const seconds = (n: number) => n * 1000;

  it('three probes in a row unanswered, over the bound: frozen; fewer, or sooner, or one answered between: not', () => {
    const bound = seconds(300);
    assert.equal(probeEveryMs(bound), seconds(150), 'three probes span the bound');
    let silence = afterProbe(null, silent, 0);
    silence = afterProbe(silence, silent, seconds(150));
    assert.equal(isFrozen(silence, seconds(310), bound), false, 'two probes are not enough, however long');
    silence = afterProbe(silence, silent, seconds(200));
    assert.deepEqual(silence && { since: silence.since, failed: silence.failed }, { since: 0, failed: 3 });
    assert.equal(isFrozen(silence, seconds(290), bound), false, 'three, but within the bound');
    assert.equal(isFrozen(silence, seconds(300), bound), true);
    assert.equal(afterProbe(silence, { answered: true }, seconds(310)), null, 'an answer ends the silence');
    const again = afterProbe(afterProbe(null, silent, seconds(400)), silent, seconds(550));
    assert.equal(isFrozen(afterProbe(again, silent, seconds(700)), seconds(710), bound), true, 'counted from the first probe after the answer');
    assert.equal(isFrozen(afterProbe(again, silent, seconds(600)), seconds(610), bound), false);
  });
});
