import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg, startImaged } from './helpers/imaged-fixtures.ts';
import { insertQueuedRow, rawGet } from './helpers/imaged-in-process.ts';
import { spawnTs } from './helpers/processes.ts';
import { skewedClockEnv } from './helpers/skewed-clock.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** This host's clock an hour fast against the database's (a host whose NTP failed). */
const FAST = 3600;

/**
 * Every lock, heartbeat and retry decision is made on the database's clock, so hosts whose clocks drift agree
 * on them. What a host tells its operator or a client is then said on its own clock. Each daemon runs here with
 * its wall clock an hour fast (libfaketime), against the real server.
 */
describe("a host whose clock is off the database's", function () {
  this.timeout(120_000);
  let t: TestDatabase;
  const closers: Array<() => Promise<void>> = [];

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
    await t?.drop();
  });

  it("a run by hand says when its rows come due and how long ago the holder's heartbeat was on this host's clock", async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } });
    await sql`INSERT INTO datasources (country, datasource_id) VALUES ('uk', 1)`.execute(t.db);
    // One row backing off for ten minutes (database time), one held by another worker that beat just now.
    const {
      rows: [due],
    } = await sql<{ at: Date }>`
      INSERT INTO live_images (country, datasource_id, image_url, attempts, last_error_class, last_error, next_attempt_at)
      VALUES ('uk', 1, 'http://127.0.0.1:1/a.jpg', 1, 'timeout', 'timeout: the server was too slow', now() + interval '10 minutes')
      RETURNING next_attempt_at AS at`.execute(t.db);
    await sql`INSERT INTO workers (id, component, host, pid, heartbeat_at) VALUES ('web3:4242:9f2c01ab', 'lis_downloadd', 'web3', 4242, now())`.execute(t.db);
    await sql`INSERT INTO live_images (country, datasource_id, image_url, locked_by, locked_at)
              VALUES ('uk', 1, 'http://127.0.0.1:1/b.jpg', 'web3:4242:9f2c01ab', now())`.execute(t.db);

    const run = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig(), '--verbose'], skewedClockEnv(FAST));
    const exit = await run.exited;
    const output = run.output();
    assert.equal(exit.code, 0, output);
    const said =
      /No rows gained\. No work to do\. 1 row waits for a retry until (\d\d):(\d\d):(\d\d) \(timeout: .*1 row is held by another worker, web3:4242:9f2c01ab \(last heartbeat (\d+)s ago\)/.exec(
        output,
      );
    assert.ok(said, output);
    // On this host's clock the row comes due an hour after the database's time of it (the line's local time).
    const expected = new Date(due.at.getTime() + FAST * 1000);
    const shown = new Date(expected);
    shown.setHours(Number(said[1]), Number(said[2]), Number(said[3]), 0);
    const off = Math.abs(shown.getTime() - expected.getTime()) / 1000;
    assert.ok(off <= 5, `shown ${said[1]}:${said[2]}:${said[3]}, ${off} s from this host's ${expected.toTimeString().slice(0, 8)}`);
    assert.ok(Number(said[4]) < 60, `a heartbeat of just now, said to be ${said[4]}s ago`);
  });

  it("lis_imaged: a queued row whose retry is to come is 503 until then, with a Retry-After on the database's clock", async () => {
    const origin = await OriginServer.start(new Map([['/photo.jpg', await photoJpeg(600, 400)]]));
    closers.push(() => origin.close());
    t = await createTestDatabase({
      overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: { small: { width: 120, height: 90, mode: 'crop' } } } },
    });
    const imaged = await startImaged(t.writeConfig(), skewedClockEnv(FAST));
    closers.push(imaged.stop);
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    await sql`UPDATE live_images SET attempts = 1, last_error_class = 'timeout', next_attempt_at = now() + interval '5 minutes' WHERE id = ${row.id}`.execute(
      t.db,
    );
    const res = await rawGet(imaged.url, row.pathOf('small'));
    assert.equal(res.status, 503, res.body.toString());
    assert.match(res.body.toString(), /^the image waits for its retry at \S+ \(last error: timeout\)\n$/);
    const after = Number(res.headers['retry-after']);
    assert.ok(after > 240 && after <= 300, `Retry-After ${after}`);
    assert.equal(origin.hits.size, 0, 'nothing fetched it');
  });
});
