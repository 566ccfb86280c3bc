import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { STORE_MARKER } from '../src/daemon/store-check.ts';
import { CLOCK_FILE, FRONTEND_MARKER } from '../src/push/frontend-root-check.ts';
import pg from 'pg';
import { dbScan } from '../src/cron/db-scan.ts';
import { fsCheck } from '../src/cron/fs-check.ts';
import { findAlerts } from '../src/alerts/alert-sources.ts';
import { refreshRows } from '../src/queue/refresh-rows.ts';
import { enqueueRows } from '../src/queue/enqueue-rows.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { ImageSys } from '../src/interface/image-sys.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { deletionRules, parseListOnly } from '../src/cron/frontend-files.ts';
import { originalPath } from '../src/store/store-layout.ts';
import { insertPushRows } from './helpers/push-fixtures.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { freePort } from './helpers/free-port.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { countBy } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const copyTo = (from: string, root: string, files: string[]) => {
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.copyFileSync(path.join(from, f), path.join(root, f));
  }
};

/**
 * Six live UK rows of this host, their files in its stores and on two frontends: n1 (an rsync daemon) and n2
 * (a local folder).
 */
async function sixLiveRows() {
  const t = await createTestDatabase({ overrides: { services: { runDir: 'run' } } });
  const daemon = await RsyncDaemon.start(path.join(t.dir, 'n1'));
  const local = path.join(t.dir, 'n2');
  await addFrontend(t.db, 'n1', daemon.url());
  await addFrontend(t.db, 'n2', local);
  const files = await insertPushRows(t.db, t.config, 'uk', 6, { stage: 'live' });
  for (const root of [daemon.moduleDir, local]) copyTo(t.config.stores.thumbnails, root, files);
  const rows = await t.db.selectFrom('live_images').select('image_hash').execute();
  for (const r of rows) {
    fs.mkdirSync(path.dirname(originalPath(t.config, 'uk', r.image_hash)), { recursive: true });
    fs.writeFileSync(originalPath(t.config, 'uk', r.image_hash), 'original');
  }
  const configFile = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') } });
  return { t, daemon, local, files, configFile };
}

/** Backends of this test's database waiting on a lock (a row lock held by the test). */
async function waitingOnLocks(t: TestDatabase): Promise<number> {
  const { rows } = await sql`SELECT 1 FROM pg_stat_activity WHERE datname = ${t.name} AND wait_event_type = 'Lock'`.execute(t.db);
  return rows.length;
}

/**
 * lis_cron_frontend `args` (with `configFile`) started while a row lock on `id` is held here: returns once the run
 * waits on it. `release()` (once is enough) lets it go on.
 */
async function runHeldOnRow(t: TestDatabase, configFile: string, id: string, args: string[], what: string) {
  const other = new pg.Client({ connectionString: t.url });
  await other.connect();
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await other.query('ROLLBACK').catch(() => {});
    await other.end();
  };
  let run: Spawned | null = null;
  try {
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM live_images WHERE id = $1 FOR UPDATE', [id]);
    run = spawnTs('bin/lis_cron_frontend', args, { LIS_CONFIG: configFile });
    // 60 s: on a machine loaded three times over (a test run beside a type-check), a run took over 30 s to get there.
    await waitFor(async () => (await waitingOnLocks(t)) > 0, 60_000, what);
    return { run, release };
  } catch (error) {
    // The run is stopped, not left to finish once the lock goes; what it said tells why it never waited there.
    if (run) {
      run.child.kill('SIGKILL');
      await run.exited;
    }
    await release();
    throw run ? new Error(`${(error as Error).message}; the run said:\n${run.output()}`, { cause: error }) : error;
  }
}

describe('lis_cron_frontend', () => {
  let t: TestDatabase;
  let daemon: RsyncDaemon;
  let local: string;
  let files: string[];
  let configFile: string;

  beforeEach(async function () {
    this.timeout(30_000);
    ({ t, daemon, local, files, configFile } = await sixLiveRows());
  });
  afterEach(async () => {
    await daemon.stop();
    await t.drop();
  });

  const runWaitingOnRow = (id: string, args: string[], what: string) => runHeldOnRow(t, configFile, id, args, what);

  const cron = async (args: string[]) => {
    const run = spawnTs('bin/lis_cron_frontend', args, { LIS_CONFIG: configFile });
    const { code } = await run.exited;
    return { code, text: run.output() };
  };

  it('--db_scan purges expired images from the table, the stores and every frontend, and repairs impossible states', async function () {
    this.timeout(60_000);
    const expired = await t.db.selectFrom('live_images').select(['id', 'image_hash', 'image_data']).orderBy('id').limit(2).execute();
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days' WHERE id = ANY(${expired.map((r) => r.id)}::bigint[])`.execute(t.db);
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage) VALUES ('uk', 1, 'http://x.com/odd.jpg', 'push')`.execute(t.db);
    // Claimable, but missing from claimable_rows (as after an UPDATE by hand that unlocked it): no claim would find it.
    await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, 'http://x.com/unlisted.jpg')`.execute(t.db);
    await sql`DELETE FROM claimable_rows WHERE id = (SELECT id FROM live_images WHERE image_url = 'http://x.com/unlisted.jpg')`.execute(t.db);
    const expiredFiles = files.filter((f) => expired.some((r) => f.includes(r.image_hash)));
    assert.equal(expiredFiles.length, 6);

    const dry = await cron(['--db_scan', '--country', 'uk', '--dry-run']);
    assert.equal(dry.code, 0, dry.text);
    assert.match(dry.text, /Would purge 2 images/);
    assert.match(dry.text, /Would list 1 claimable rows missing from claimable_rows/);
    assert.equal((await countBy(t.db))['live/done'], 6, 'a dry run changes nothing');

    const run = await cron(['--db_scan', '--country', 'uk', '--verbose']);
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /Listed 1 claimable rows missing from claimable_rows/);
    assert.match(run.text, /Summary for UK in [\d.]+s: db_scan: 2 purged, 0 deferred, 2 repaired/);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 1, 'live/done': 4, 'thumbnail/waiting': 1 });
    const { rows: listed } = await sql<{ stage: string }>`SELECT stage FROM claimable_rows ORDER BY stage`.execute(t.db);
    assert.deepEqual(
      listed.map((r) => r.stage),
      ['download', 'thumbnail'],
      'both claimable rows are listed for claims',
    );
    for (const f of files) {
      const gone = expiredFiles.includes(f);
      for (const root of [t.config.stores.thumbnails, daemon.moduleDir, local]) {
        assert.equal(fs.existsSync(path.join(root, f)), !gone, `${f} in ${root}`);
      }
    }
    for (const r of expired) assert.equal(fs.existsSync(originalPath(t.config, 'uk', r.image_hash)), false);
  });

  it('--db_scan keeps expired rows for the next run while a frontend cannot be cleaned', async function () {
    this.timeout(60_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    await daemon.stop();
    const run = await cron(['--db_scan', '--country', 'uk']);
    assert.match(run.text, /0 purged, 6 deferred/);
    // Not a success: the images are still on n1. Exit 1, and the outcome the upkeep_failed alert reads says why.
    assert.equal(run.code, 1, run.text);
    const { rows: outcome } = await sql<{ detail: string }>`SELECT detail FROM manager_events WHERE check_name = 'upkeep' ORDER BY id DESC LIMIT 1`.execute(
      t.db,
    );
    assert.match(outcome[0].detail, /^failed: 6 expired images not purged: n1 could not be cleaned; /);
    assert.equal((await countBy(t.db))['live/parked'], 6, 'parked, so no longer served, and retried next run');
    // n2 (local) was cleaned: the parked rows lack their files there by design, and are not the pusher's to send again.
    const check = await cron(['--fs_check', '--country', 'uk']);
    assert.match(check.text, /n2: deleted 0 orphans, 0 live rows missing files sent back to the pusher/);
    assert.match(check.text, /n2 0 orphans\/0 re-pushed/);
    assert.equal((await countBy(t.db))['live/parked'], 6);
    await daemon.start();
    const again = await cron(['--db_scan', '--country', 'uk']);
    assert.match(again.text, /6 purged, 0 deferred/);
    assert.equal(again.code, 0, again.text);
    assert.deepEqual(await countBy(t.db), {});
    const left = files.filter((f) => fs.existsSync(path.join(daemon.moduleDir, f)));
    assert.deepEqual(left, []);
  });

  it('--db_scan purging a row whose image_data breaks the contract deletes nothing its paths point at outside our names', async function () {
    this.timeout(60_000);
    const victim = path.join(t.dir, 'victim.txt');
    fs.writeFileSync(victim, 'not ours');
    const neighbour = files[0]; // another (live) row's thumbnail
    const imageData = {
      presets: {
        small: { width: 64, height: 48, bytes: 8, path: 'uk/../../victim.txt' },
        medium: { width: 1, height: 1, bytes: 1, path: `uk/../${neighbour}` },
      },
    };
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state, image_data, last_seen)
              VALUES ('uk', 1, 'http://x.com/bad-data.jpg', 'push', 'waiting', ${JSON.stringify(imageData)}::jsonb, now() - interval '40 days')`.execute(t.db);
    const run = await cron(['--db_scan', '--country', 'uk']);
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /1 purged, 0 deferred/);
    assert.equal(fs.existsSync(victim), true, 'a file outside the store and the frontends is kept');
    for (const root of [t.config.stores.thumbnails, daemon.moduleDir, local])
      assert.ok(fs.existsSync(path.join(root, neighbour)), `${neighbour} kept in ${root}`);
  });

  it("--db_scan keeps expired rows while a local frontend's disk is not mounted (root missing), rather than deleting the rows with their files still on it", async function () {
    this.timeout(60_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    const unmounted = `${local}.unmounted`;
    fs.renameSync(local, unmounted);
    const run = await cron(['--db_scan', '--country', 'uk']);
    assert.equal(run.code, 1, run.text);
    assert.match(run.text, /0 purged, 6 deferred/);
    assert.ok(run.text.includes(`n2: cannot delete 18 files: frontend n2's root ${local} is missing (not mounted?)`), run.text);
    assert.equal((await countBy(t.db))['live/parked'], 6, 'parked for the next run');
    assert.equal(fs.existsSync(local), false, 'nothing made in its place');
    fs.renameSync(unmounted, local);
    const again = await cron(['--db_scan', '--country', 'uk']);
    assert.equal(again.code, 0, again.text);
    assert.match(again.text, /6 purged, 0 deferred/);
    assert.deepEqual(
      files.filter((f) => fs.existsSync(path.join(local, f))),
      [],
      'removed from its disk once mounted',
    );
  });

  it('--db_scan purges although a disabled frontend (gone for good) cannot be reached, and says what it left there', async function () {
    this.timeout(60_000);
    // `lis frontend disable n3` is what the README says to do with a frontend gone for good: it must not hold every purge back.
    await addFrontend(t.db, 'n3', `rsync://127.0.0.1:${await freePort()}/thumbs`, false);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    const run = await cron(['--db_scan', '--country', 'uk']);
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /6 purged, 0 deferred/);
    assert.match(run.text, /n3 \(disabled\) could not be cleaned: .*fs_check removes them if it is enabled again/);
    assert.deepEqual(await countBy(t.db), {});
    for (const root of [daemon.moduleDir, local])
      assert.deepEqual(
        files.filter((f) => fs.existsSync(path.join(root, f))),
        [],
        `all gone from ${root}`,
      );
  });

  it('--db_scan purges only the rows it marked: one claimed, or seen again by the ETL, while the purge picked its batch keeps its files', async function () {
    this.timeout(60_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    const rows = await t.db.selectFrom('live_images').select(['id', 'image_hash']).orderBy('id').execute();
    const [claimed, relisted] = rows;
    // A pusher's claim and an ETL's upsert, in flight (row locks held) as the purge reads its batch; they commit once it waits on them.
    const other = new pg.Client({ connectionString: t.url });
    await other.connect();
    const log = createLogger({ component: 'cron_frontend', log: t.config.log, screen: false });
    try {
      await other.query('BEGIN');
      await other.query(`UPDATE live_images SET locked_by = 'h:1:push', locked_at = now() WHERE id = $1`, [claimed.id]);
      await other.query(`UPDATE live_images SET last_seen = now() WHERE id = $1`, [relisted.id]);
      const scan = dbScan({ config: t.config, db: t.db, log, country: 'uk', dryRun: false });
      await waitFor(
        async () => {
          const { rows: waiting } = await sql`SELECT 1 FROM pg_stat_activity WHERE datname = ${t.name} AND wait_event_type = 'Lock'`.execute(t.db);
          return waiting.length > 0;
        },
        20_000,
        'the purge to wait for the rows in flight',
      );
      await other.query('COMMIT');
      const summary = await scan;
      assert.equal(summary.purged, 4);
    } finally {
      await other.end();
      await closeLogger(log);
    }
    assert.deepEqual(
      (await t.db.selectFrom('live_images').select('id').orderBy('id').execute()).map((r) => r.id),
      [claimed.id, relisted.id],
      'both kept',
    );
    for (const r of [claimed, relisted]) {
      const own = files.filter((f) => f.includes(r.image_hash));
      for (const root of [t.config.stores.thumbnails, daemon.moduleDir, local])
        for (const f of own) assert.ok(fs.existsSync(path.join(root, f)), `${f} kept in ${root}`);
      assert.ok(fs.existsSync(originalPath(t.config, 'uk', r.image_hash)), 'its original kept');
    }
  });

  it('--db_scan queues anew, not deletes, a row the ETL lists again after it was marked for the purge: back in download, uncharged, not live, its push records gone', async function () {
    this.timeout(60_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days', attempts = 2`.execute(t.db);
    const [relisted] = await t.db.selectFrom('live_images').select(['id', 'image_url', 'image_hash', 'datasource_id']).orderBy('id').execute();
    await sql`INSERT INTO frontend_pushes (frontend, country, image_hash, pushed_at) SELECT 'n2', country, image_hash, now() FROM live_images`.execute(t.db);
    const log = createLogger({ component: 'cron_frontend', log: t.config.log, screen: false });
    const images = await ImageSys.open({ config: t.config });
    try {
      const scan = () => dbScan({ config: t.config, db: t.db, log, country: 'uk', dryRun: false });
      // A run that cannot clean n1 marks every row and removes what it can (n2, the stores): the rows wait for the next.
      await daemon.stop();
      assert.equal((await scan()).purgeDeferred, 6);
      const listing = { country: 'uk', datasourceId: relisted.datasource_id };
      // Then the feed lists one of them again: the ETL only refreshes its last_seen (the row is known).
      assert.deepEqual(await images.imagesForSiBuild([relisted.image_url], listing), [
        { url: relisted.image_url, hash: relisted.image_hash, live: false, status: 'parked' },
      ]);
      await daemon.start();
      const summary = await scan();
      // Before, it was deleted with the others: a photo the feed lists, lost until its URL was new again.
      assert.deepEqual([summary.purged, summary.purgeDeferred, summary.requeued], [5, 0, 1]);
      const row = await t.db
        .selectFrom('live_images')
        .select(['stage', 'state', 'attempts', 'locked_by', 'store_host', 'last_error_class', 'live_data', 'content_hash'])
        .where('id', '=', relisted.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(row, {
        stage: 'download',
        state: 'waiting',
        attempts: 0,
        locked_by: null,
        store_host: '',
        last_error_class: null,
        live_data: null,
        content_hash: null,
      });
      assert.equal((await t.db.selectFrom('frontend_pushes').where('image_hash', '=', relisted.image_hash).selectAll().execute()).length, 0);
      assert.deepEqual(await countBy(t.db), { 'download/waiting': 1 }, 'the others purged');
      const { rows: listed } = await sql`SELECT 1 FROM claimable_rows WHERE id = ${relisted.id}::bigint AND stage = 'download'`.execute(t.db);
      assert.equal(listed.length, 1, 'claimable by lis_downloadd');
      assert.deepEqual(await images.imagesForSiBuild([relisted.image_url], listing), [
        { url: relisted.image_url, hash: relisted.image_hash, live: false, status: 'download' },
      ]);
    } finally {
      await images.close();
      await closeLogger(log);
    }
  });

  it('--db_scan queues a row listed again anew even in a run that keeps the others for a frontend it cannot clean', async function () {
    this.timeout(60_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    const [relisted] = await t.db.selectFrom('live_images').select(['id', 'image_url', 'datasource_id']).orderBy('id').execute();
    const log = createLogger({ component: 'cron_frontend', log: t.config.log, screen: false });
    try {
      const scan = () => dbScan({ config: t.config, db: t.db, log, country: 'uk', dryRun: false });
      await daemon.stop();
      assert.equal((await scan()).purgeDeferred, 6);
      await enqueueRows(t.db, 'uk', [{ datasourceId: relisted.datasource_id, url: relisted.image_url }]);
      // n1 still down: before, the row stayed parked (not served) with the others until n1 could be cleaned.
      const summary = await scan();
      assert.deepEqual([summary.purged, summary.purgeDeferred, summary.requeued], [0, 5, 1]);
      assert.deepEqual(await countBy(t.db), { 'download/waiting': 1, 'live/parked': 5 });
    } finally {
      await closeLogger(log);
    }
  });

  it('--fs_check deletes planted orphans and sends a live row whose file vanished back to the pusher', async function () {
    this.timeout(60_000);
    const orphan = 'uk/ab/cd/abcd0000000000000000000000000000_small.jpg';
    for (const root of [daemon.moduleDir, local, t.config.stores.thumbnails]) {
      fs.mkdirSync(path.dirname(path.join(root, orphan)), { recursive: true });
      fs.writeFileSync(path.join(root, orphan), 'stray');
      // Old enough to judge (a fresh file may be a write in progress).
      const old = new Date(Date.now() - 2 * 3600_000);
      fs.utimesSync(path.join(root, orphan), old, old);
    }
    fs.rmSync(path.join(local, files[4]));
    const hash = /([0-9a-f]{32})_/.exec(files[4])![1];
    await sql`INSERT INTO frontend_pushes (frontend, country, image_hash, pushed_at) VALUES ('n2', 'uk', ${hash}, now()), ('n1', 'uk', ${hash}, now())`.execute(
      t.db,
    );

    // Partial writes: one of a writer that died (SIGKILL mid-write), one of a writer still alive, and one whose pid
    // names a live process that is not its writer: in a container every daemon is pid 1, so a killed writer's pid is
    // always alive (and so is a pid reused after it). Untouched for two hours, no write of ours is still at it.
    const deadTemp = `${files[0]}.tmp-999999-abcd1234`;
    const liveTemp = `${files[1]}.tmp-${process.pid}-abcd1234`;
    const reusedPidTemp = `${files[2]}.tmp-${process.pid}-5678abcd`;
    for (const f of [deadTemp, liveTemp, reusedPidTemp]) fs.writeFileSync(path.join(t.config.stores.thumbnails, f), 'half a jpeg');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    fs.utimesSync(path.join(t.config.stores.thumbnails, reusedPidTemp), twoHoursAgo, twoHoursAgo);

    const run = await cron(['--fs_check', '--country', 'uk']);
    assert.equal(run.code, 0, run.text);
    assert.equal(fs.existsSync(path.join(t.config.stores.thumbnails, deadTemp)), false, "a dead writer's partial file is removed at once");
    assert.equal(fs.existsSync(path.join(t.config.stores.thumbnails, liveTemp)), true, "a live writer's is left alone");
    // Before, kept for ever: its pid was alive.
    assert.equal(fs.existsSync(path.join(t.config.stores.thumbnails, reusedPidTemp)), false, 'one unchanged for hours is removed, whatever its pid names');
    assert.match(run.text, /thumbnails 1 orphans\/2 partial/);
    const upkeep = await t.db.selectFrom('manager_events').select(['subject', 'detail']).where('check_name', '=', 'upkeep').execute();
    assert.equal(upkeep.length, 1, 'the outcome is recorded for the alerts');
    assert.match(upkeep[0].detail, /^ok: fs_check: /);
    assert.match(run.text, /n1: deleted 1 orphans, 0 live rows missing files/);
    assert.match(run.text, /n2: deleted 1 orphans, 1 live rows missing files sent back to the pusher/);
    for (const root of [daemon.moduleDir, local, t.config.stores.thumbnails]) assert.equal(fs.existsSync(path.join(root, orphan)), false, root);
    for (const f of files) assert.ok(fs.existsSync(path.join(daemon.moduleDir, f)), 'nothing else removed');
    const row = await t.db.selectFrom('live_images').select(['stage', 'state']).where('image_hash', '=', hash).executeTakeFirstOrThrow();
    assert.deepEqual(row, { stage: 'push', state: 'waiting' });
    const pushes = await t.db.selectFrom('frontend_pushes').select('frontend').where('image_hash', '=', hash).execute();
    assert.deepEqual(pushes, [{ frontend: 'n1' }], 'only the frontend that lacks it is pushed again');
    const images = await ImageSys.open({ config: t.config });
    try {
      assert.notEqual(await images.getSearchApiDataForHash(hash, { country: 'uk' }), null, 'the image stays live while it is pushed again');
    } finally {
      await images.close();
    }
  });

  const CLOCK_ONLY = "a mount point holding only fs_check's clock file (left there by a run while the disk was away)";
  for (const how of ['missing', 'an empty folder without its marker (the mount point of a disk not mounted)', CLOCK_ONLY] as const) {
    it(`--fs_check leaves a local frontend whose root is ${how} alone: nothing re-pushed, and says why`, async function () {
      this.timeout(60_000);
      await sql`INSERT INTO frontend_pushes (frontend, country, image_hash, pushed_at) SELECT 'n2', country, image_hash, now() FROM live_images`.execute(t.db);
      fs.rmSync(local, { recursive: true });
      if (how !== 'missing') fs.mkdirSync(local);
      // The clock file is no sign of a mounted disk: before, any file there made the root look like one in use.
      if (how === CLOCK_ONLY) fs.writeFileSync(path.join(local, CLOCK_FILE), '');
      const run = await cron(['--fs_check', '--country', 'uk']);
      assert.equal(run.code, 1, 'a frontend not checked is a failed run, as an unreachable one is');
      const why = how === 'missing' ? `is missing (not mounted?)` : `is empty and has no ${FRONTEND_MARKER}, but rows were pushed there: is its disk mounted?`;
      assert.ok(run.text.includes(`frontend n2's root ${local} ${why}`), run.text);
      assert.ok(run.text.includes('; not checking it this run, nothing sent back to the pusher'), run.text);
      assert.match(run.text, /n2: deleted 0 orphans, 0 live rows missing files sent back to the pusher; not checked: root missing or empty \(not mounted\?\)/);
      assert.match(run.text, /fs_check: n1 0 orphans\/0 re-pushed, n2 0 orphans\/0 re-pushed \(not checked\)/);
      assert.deepEqual(await countBy(t.db), { 'live/done': 6 }, 'no row is sent back to the pusher');
      assert.equal(
        (await t.db.selectFrom('frontend_pushes').where('frontend', '=', 'n2').select('image_hash').execute()).length,
        6,
        'its push records are kept',
      );
      assert.deepEqual(
        how === 'missing' ? fs.existsSync(local) : fs.readdirSync(local),
        how === 'missing' ? false : how === CLOCK_ONLY ? [CLOCK_FILE] : [],
        'nothing made or written in its place',
      );
      const upkeep = await t.db.selectFrom('manager_events').select('detail').where('check_name', '=', 'upkeep').executeTakeFirstOrThrow();
      assert.match(upkeep.detail, /^failed: n2 could not be checked; fs_check: /);
    });
  }

  it("--fs_check leaves rows alone when this host's stores are not mounted: nothing made again or downloaded again, and says why", async function () {
    this.timeout(60_000);
    const ids = (await t.db.selectFrom('live_images').select('id').orderBy('id').execute()).map((r) => r.id);
    await sql`UPDATE live_images SET stage = 'push', state = 'waiting' WHERE id = ANY(${ids.slice(0, 2)}::bigint[])`.execute(t.db);
    await sql`UPDATE live_images SET stage = 'thumbnail', state = 'waiting' WHERE id = ANY(${ids.slice(2, 4)}::bigint[])`.execute(t.db);
    const before = await countBy(t.db);
    // Both disks gone from under their mount points.
    for (const store of [t.config.stores.thumbnails, t.config.stores.originals]) fs.renameSync(store, `${store}.unmounted`);
    const run = await cron(['--fs_check', '--country', 'uk']);
    assert.deepEqual(await countBy(t.db), before, `no row sent back for files it cannot see: ${run.text}`);
    assert.equal(run.code, 1, 'a store not checked is a failed run');
    assert.ok(run.text.includes(`thumbnail store ${t.config.stores.thumbnails} is missing (not mounted?)`), run.text);
    assert.ok(run.text.includes(`originals store ${t.config.stores.originals} is missing (not mounted?)`), run.text);
    const upkeep = await t.db.selectFrom('manager_events').select('detail').where('check_name', '=', 'upkeep').executeTakeFirstOrThrow();
    assert.match(upkeep.detail, /^failed: thumbnail store, originals store could not be checked; fs_check: /);
  });

  it('--fs_check takes an empty, unmarked store folder (a mount point without its disk) for a store not mounted, not for a store that lost every file', async function () {
    this.timeout(60_000);
    const ids = (await t.db.selectFrom('live_images').select('id').orderBy('id').execute()).map((r) => r.id);
    await sql`UPDATE live_images SET stage = 'push', state = 'waiting' WHERE id = ANY(${ids.slice(0, 2)}::bigint[])`.execute(t.db);
    const before = await countBy(t.db);
    // The disk is gone from under its mount point, which stays as an empty folder.
    const store = t.config.stores.thumbnails;
    fs.renameSync(store, `${store}.unmounted`);
    fs.mkdirSync(store);
    const run = await cron(['--fs_check', '--country', 'uk']);
    assert.deepEqual(await countBy(t.db), before, `no row sent back for files it cannot see: ${run.text}`);
    assert.equal(run.code, 1, run.text);
    assert.ok(run.text.includes(`thumbnail store ${store} is empty and has no ${STORE_MARKER} (not mounted?)`), run.text);
  });

  it('--fs_check makes again, from its original, a live row whose thumbnails the store lost (a new disk): it stays live; not one whose original is gone too, nor any while the country has no folder there', async function () {
    const store = t.config.stores.thumbnails;
    fs.writeFileSync(path.join(store, STORE_MARKER), '');
    const log = createLogger({ component: 'cron_frontend', log: t.config.log, screen: false });
    const check = () => fsCheck({ config: t.config, db: t.db, log, country: 'uk', dryRun: false });
    try {
      // The disk replaced, the country's folder not made again: the stages take that for a store not mounted.
      fs.renameSync(path.join(store, 'uk'), path.join(t.dir, 'uk.lost'));
      await check();
      assert.deepEqual(await countBy(t.db), { 'live/done': 6 }, 'nothing made again while the store has no folder for the country');
      // The folder back (the operator's mkdir, the files really gone): two rows lost their thumbnails, the second
      // its original too.
      fs.renameSync(path.join(t.dir, 'uk.lost'), path.join(store, 'uk'));
      const hashOf = (f: string) => /([0-9a-f]{32})_/.exec(f)![1];
      const [kept, gone] = [hashOf(files[0]), hashOf(files[3])];
      for (const f of files.filter((f) => [kept, gone].includes(hashOf(f)))) fs.rmSync(path.join(store, f));
      fs.rmSync(originalPath(t.config, 'uk', gone));
      const summary = await check();
      assert.equal(summary.thumbnailStore.missing, 1);
      assert.deepEqual(await countBy(t.db), { 'live/done': 5, 'thumbnail/waiting': 1 });
      const remade = await t.db
        .selectFrom('live_images')
        .select(['image_hash', 'attempts', 'live_data'])
        .where('stage', '=', 'thumbnail')
        .executeTakeFirstOrThrow();
      assert.equal(remade.image_hash, kept, 'the row whose original is here, not the one whose original is gone too');
      assert.equal(remade.attempts, 0);
      assert.notEqual(remade.live_data, null, 'it stays live (live_data) while it is made again');
      for (const root of [daemon.moduleDir, local]) for (const f of files) assert.ok(fs.existsSync(path.join(root, f)), `nothing taken off ${root}`);
    } finally {
      await closeLogger(log);
    }
  });

  it('stopped by SIGTERM mid-run: exits non-zero saying so, records the failure for the alert, and frees its lock', async function () {
    this.timeout(120_000);
    // A live row n2 lacks, so fs_check re-pushes it; its row lock is held here, so the run stops there, mid-walk.
    const row = await t.db.selectFrom('live_images').select(['id', 'image_hash']).orderBy('id').executeTakeFirstOrThrow();
    for (const f of files.filter((f) => f.includes(row.image_hash))) fs.rmSync(path.join(local, f));
    const held = await runWaitingOnRow(row.id, ['--fs_check', '--country', 'uk'], 'the run to wait on the row');
    const { run } = held;
    try {
      run.child.kill('SIGTERM');
      const { code } = await run.exited;
      assert.equal(code, 143, run.output());
      assert.match(run.output(), /SIGTERM received: stopped before the run finished \(in UK\)/);
    } finally {
      await held.release();
    }
    const upkeep = await t.db.selectFrom('manager_events').select('detail').where('check_name', '=', 'upkeep').executeTakeFirstOrThrow();
    assert.match(upkeep.detail, /^failed: stopped by SIGTERM before it finished/);
    // The next run takes over (the lock's process is gone) and finishes the job.
    const again = await cron(['--fs_check', '--country', 'uk']);
    assert.equal(again.code, 0, again.text);
    assert.match(again.text, /n2 0 orphans\/1 re-pushed/);
  });

  it('--fs_check does not re-push a row that went live after it listed the frontend', async function () {
    this.timeout(120_000);
    // The walk is paused (a row lock, held here) at the first folder, after n1 was listed; meanwhile the pusher
    // puts a new row live in a later folder. n1's listing, hours old on a big frontend, cannot have its files.
    const rows = await t.db.selectFrom('live_images').select(['id', 'image_hash']).orderBy('image_hash').execute();
    const first = rows[0];
    for (const f of files.filter((f) => f.includes(first.image_hash))) fs.rmSync(path.join(daemon.moduleDir, f));
    let n = 0;
    const url = () => `http://img.example.com/late${n}/1.jpg`;
    while (!crypto.createHash('md5').update(url()).digest('hex').startsWith('f')) n++;
    assert.ok(first.image_hash < 'f', 'the paused folder comes first');
    const held = await runWaitingOnRow(first.id, ['--fs_check', '--country', 'uk'], 'the walk to wait on the first row');
    const { run } = held;
    try {
      const late = await insertPushRows(t.db, t.config, 'uk', 1, { stage: 'live', prefix: url().replace(/1\.jpg$/, '') });
      assert.ok(late[0].startsWith('uk/f'), late[0]);
      for (const root of [daemon.moduleDir, local]) copyTo(t.config.stores.thumbnails, root, late);
      await held.release();
      const { code } = await run.exited;
      assert.equal(code, 0, run.output());
      assert.match(run.output(), /n1 0 orphans\/1 re-pushed, n2 0 orphans\/0 re-pushed/);
    } finally {
      await held.release();
    }
    assert.deepEqual(await countBy(t.db), { 'live/done': 6, 'push/waiting': 1 }, 'only the row n1 really lacked');
  });

  it("--fs_check keeps this host's files of rows waiting to be downloaded again (lis refresh), which stay live", async function () {
    this.timeout(60_000);
    // `lis refresh` clears store_host while the row waits for its conditional download; a 304 sends it straight
    // back to live "touching neither its data nor its files". Those files are this host's, not another's.
    assert.equal(await refreshRows(t.db, { country: 'uk', olderThanDays: 0 }), 6);
    const run = await cron(['--fs_check', '--country', 'uk']);
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /thumbnails 0 orphans\/0 partial\/0 redone; originals 0 orphans/);
    for (const f of files) assert.ok(fs.existsSync(path.join(t.config.stores.thumbnails, f)), `${f} kept in the store`);
    for (const r of await t.db.selectFrom('live_images').select('image_hash').execute())
      assert.ok(fs.existsSync(originalPath(t.config, 'uk', r.image_hash)), 'its original kept (on a 304 the row goes back to live as it was)');
  });

  it('says it had nothing to do when no country has rows, rather than printing nothing', async function () {
    this.timeout(30_000);
    await sql`DELETE FROM live_images`.execute(t.db);
    const run = await cron(['--all', '--dry-run']);
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /INFO CronFrontend::main\[\d+\] No country has rows in live_images: nothing to do \(--country XX checks one anyway\)/);
  });

  it('--help names every place its config can come from, --config first', async () => {
    const help = spawnTs('bin/lis_cron_frontend', ['--help']);
    assert.equal((await help.exited).code, 0, help.output());
    assert.match(help.output().replace(/\s+/g, ' '), /\(config: --config, else \$LIS_CONFIG, else \.\/imagesys\.json\)/);
  });

  it('refuses a second run for the same country while one holds the lock, saying who', async function () {
    this.timeout(30_000);
    const holder = spawn('sleep', ['30']);
    try {
      fs.mkdirSync(path.join(t.dir, 'run'), { recursive: true });
      fs.writeFileSync(path.join(t.dir, 'run', 'cron_frontend.uk.lock'), `${holder.pid}\nlis_cron_frontend uk since earlier\n`);
      const run = await cron(['--all', '--country', 'uk']);
      assert.equal(run.code, 1);
      assert.match(run.text, new RegExp(`lis_cron_frontend for UK is already running: .*held by pid ${holder.pid}`));
    } finally {
      // Until it is reaped (its exit event) a killed process is still there to the next run's check of the lock.
      const gone = once(holder, 'exit');
      holder.kill();
      await gone;
    }
    // A lock left by a process that died is stale and taken over.
    const run = await cron(['--all', '--country', 'uk']);
    assert.equal(run.code, 0, run.text);
    assert.equal(fs.existsSync(path.join(t.dir, 'run', 'cron_frontend.uk.lock')), false, 'released at the end');
  });

  it('a country whose run is already going is skipped, not the countries after it', async function () {
    this.timeout(30_000);
    await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('de', 1, 'http://x.com/de.jpg')`.execute(t.db);
    // `--country de` by hand still running when the weekly --all comes (countries go in order: de, then uk).
    const holder = spawn('sleep', ['30']);
    try {
      fs.mkdirSync(path.join(t.dir, 'run'), { recursive: true });
      fs.writeFileSync(path.join(t.dir, 'run', 'cron_frontend.de.lock'), `${holder.pid}\nlis_cron_frontend de since earlier\n`);
      const run = await cron(['--all']);
      assert.equal(run.code, 1, run.text);
      assert.match(run.text, /lis_cron_frontend for DE is already running/);
      assert.match(run.text, /Summary for UK/);
    } finally {
      holder.kill();
    }
  });

  it('lists and deletes with rsync exactly the files named', () => {
    assert.deepEqual(parseListOnly('drwxr-xr-x          4,096 2026/11/22 01:00:00 .\n-rw-r--r--         12,345 2026/11/22 01:00:00 0f/a_small.jpg\n'), [
      '0f/a_small.jpg',
    ]);
    assert.equal(deletionRules(['uk/a3/0f/x_small.jpg']), '+ /uk/\n+ /uk/a3/\n+ /uk/a3/0f/\n+ /uk/a3/0f/x_small.jpg\n- *\n');
  });
});

describe('lis_cron_frontend on two hosts at once', () => {
  let t: TestDatabase;
  let daemon: RsyncDaemon;
  let local: string;
  let files: string[];
  /** Host A: this test's host (`testhost`), whose stores hold the rows' files. */
  let configFile: string;
  /** Host B (`hostb`): the same database and frontends, stores, run folder and logs of its own. */
  let configB: string;
  let storesB: { originals: string; thumbnails: string };

  beforeEach(async function () {
    this.timeout(30_000);
    ({ t, daemon, local, files, configFile } = await sixLiveRows());
    const b = path.join(t.dir, 'hostb');
    storesB = { originals: path.join(b, 'originals'), thumbnails: path.join(b, 'thumbnails') };
    configB = t.writeConfig({ host: 'hostb', services: { runDir: path.join(b, 'run') }, stores: storesB, log: { dir: path.join(b, 'log') } });
  });
  afterEach(async () => {
    await daemon.stop();
    await t.drop();
  });

  /** The holder of the cluster-wide part as host B names it (host A's run: testhost, and its pid). */
  const heldByA =
    /UK: the database scan and the frontends are being worked by lis_cron_frontend on testhost pid \d+ \(since [^)]+\); skipped here, this host's stores are still checked/;
  const summaryOf = (text: string) => /Summary for UK.*/.exec(text)?.[0] ?? '(no summary)';

  /**
   * Host A's run held on a row lock where it changes what every host shares, and host B's run started
   * meanwhile: B either finishes on its own, or comes to wait on the same row (it is doing the same work). Then
   * A goes on. Both outcomes.
   */
  async function bothAtOnce(id: string, args: string[], configA = configFile, configOfB = configB) {
    const held = await runHeldOnRow(t, configA, id, args, "host A's run to wait on the row");
    const a = held.run;
    const b = spawnTs('bin/lis_cron_frontend', args, { LIS_CONFIG: configOfB });
    try {
      let bDone = false;
      void b.exited.then(() => (bDone = true));
      await waitFor(async () => bDone || (await waitingOnLocks(t)) > 1, 30_000, "host B's run to finish or to wait on the same row");
      await held.release();
      const [ea, eb] = await Promise.all([a.exited, b.exited]);
      return { a: { code: ea.code, text: a.output() }, b: { code: eb.code, text: b.output() } };
    } finally {
      await held.release();
      a.child.kill();
      b.child.kill();
    }
  }

  it('--db_scan of a country runs on one host at a time: the other says who runs it and skips it, and that is no failure', async function () {
    this.timeout(120_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    const first = await t.db.selectFrom('live_images').select('id').orderBy('id').executeTakeFirstOrThrow();
    const { a, b } = await bothAtOnce(first.id, ['--db_scan', '--country', 'uk']);
    const summaries = `A: ${summaryOf(a.text)} | B: ${summaryOf(b.text)}`;
    assert.match(b.text, heldByA, `host B scanned the database too: ${summaries}`);
    assert.match(b.text, /Summary for UK in [\d.]+s: db_scan: skipped \(worked by lis_cron_frontend on testhost pid \d+/, summaries);
    assert.equal(b.code, 0, b.text);
    assert.match(a.text, /Summary for UK in [\d.]+s: db_scan: 6 purged, 0 deferred/, summaries);
    assert.equal(a.code, 0, a.text);
    assert.deepEqual(await countBy(t.db), {});
    for (const root of [daemon.moduleDir, local])
      assert.deepEqual(
        files.filter((f) => fs.existsSync(path.join(root, f))),
        [],
        root,
      );
  });

  it('--fs_check walks the frontends from one host at a time, while each host still checks its own stores', async function () {
    this.timeout(120_000);
    // A live row n2 lacks: host A re-pushes it, held on its row lock meanwhile.
    const row = await t.db.selectFrom('live_images').select(['id', 'image_hash']).orderBy('id').executeTakeFirstOrThrow();
    for (const f of files.filter((f) => f.includes(row.image_hash))) fs.rmSync(path.join(local, f));
    // An orphan in host B's own thumbnail store, old enough to be judged.
    const orphan = path.join(storesB.thumbnails, 'uk/ab/cd/abcd0000000000000000000000000000_small.jpg');
    fs.mkdirSync(path.dirname(orphan), { recursive: true });
    fs.writeFileSync(orphan, 'stray');
    const old = new Date(Date.now() - 2 * 3600_000);
    fs.utimesSync(orphan, old, old);

    const { a, b } = await bothAtOnce(row.id, ['--fs_check', '--country', 'uk']);
    const summaries = `A: ${summaryOf(a.text)} | B: ${summaryOf(b.text)}`;
    assert.match(b.text, heldByA, `host B walked the frontends too: ${summaries}`);
    assert.match(b.text, /fs_check: frontends skipped \(worked by lis_cron_frontend on testhost pid \d+[^;]*; thumbnails 1 orphans/, summaries);
    assert.equal(fs.existsSync(orphan), false, "host B's own store is checked");
    assert.equal(b.code, 0, b.text);
    assert.match(a.text, /fs_check: n1 0 orphans\/0 re-pushed, n2 0 orphans\/1 re-pushed/, summaries);
    assert.equal(a.code, 0, a.text);
    assert.deepEqual(await countBy(t.db), { 'live/done': 5, 'push/waiting': 1 });
  });

  it('upkeep_failed names the host whose run failed: a frontend down fails the host working the shared part, not the one that skipped it', async function () {
    this.timeout(120_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    await daemon.stop();
    const first = await t.db.selectFrom('live_images').select('id').orderBy('id').executeTakeFirstOrThrow();
    const { a, b } = await bothAtOnce(first.id, ['--db_scan', '--country', 'uk']);
    assert.equal(a.code, 1, a.text);
    assert.equal(b.code, 0, b.text);
    // Host B's run, once A's is over, finds n1 still down: its own failure.
    const later = spawnTs('bin/lis_cron_frontend', ['--db_scan', '--country', 'uk'], { LIS_CONFIG: configB });
    assert.equal((await later.exited).code, 1, later.output());

    const events = await t.db.selectFrom('manager_events').select(['subject', 'detail']).where('check_name', '=', 'upkeep').orderBy('id').execute();
    assert.deepEqual(
      events.map((e) => `${e.subject}: ${e.detail.slice(0, e.detail.indexOf(':'))}`),
      ['hostb: ok', 'testhost: failed', 'hostb: failed'],
      'each outcome names the host that ran it',
    );
    const alerts = await findAlerts(t.db, t.config.alerts, ['upkeep_failed']);
    assert.deepEqual(
      alerts.map((x) => x.subject),
      ['weekly upkeep failed for UK on testhost', 'weekly upkeep failed for UK on hostb'],
    );
  });

  it('with stores every host mounts (stores.shared), the stores are walked from one host at a time too', async function () {
    this.timeout(120_000);
    const sharedA = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') }, stores: { shared: true } });
    const sharedB = t.writeConfig({
      host: 'hostb',
      services: { runDir: path.join(t.dir, 'hostb', 'run') },
      stores: { shared: true },
      log: { dir: path.join(t.dir, 'hostb', 'log') },
    });
    const row = await t.db.selectFrom('live_images').select(['id', 'image_hash']).orderBy('id').executeTakeFirstOrThrow();
    for (const f of files.filter((f) => f.includes(row.image_hash))) fs.rmSync(path.join(local, f));
    const orphan = path.join(t.config.stores.thumbnails, 'uk/ab/cd/abcd0000000000000000000000000000_small.jpg');
    fs.mkdirSync(path.dirname(orphan), { recursive: true });
    fs.writeFileSync(orphan, 'stray');
    const old = new Date(Date.now() - 2 * 3600_000);
    fs.utimesSync(orphan, old, old);

    const { a, b } = await bothAtOnce(row.id, ['--fs_check', '--country', 'uk'], sharedA, sharedB);
    const summaries = `A: ${summaryOf(a.text)} | B: ${summaryOf(b.text)}`;
    assert.match(
      b.text,
      /fs_check: frontends and stores \(shared\) skipped \(worked by lis_cron_frontend on testhost pid \d+[^;]*$/m,
      `host B walked the shared stores too: ${summaries}`,
    );
    assert.equal(b.code, 0, b.text);
    assert.match(a.text, /fs_check: n1 0 orphans\/0 re-pushed, n2 0 orphans\/1 re-pushed; thumbnails 1 orphans/, summaries);
    assert.equal(a.code, 0, a.text);
    assert.equal(fs.existsSync(orphan), false);
  });

  it("with stores.shared, a partial write is judged by its age, not by a pid that may be another host's writer", async function () {
    this.timeout(60_000);
    const shared = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') }, stores: { shared: true } });
    // Both named for a pid not alive here: on a shared store, that is as likely host B's writer as a dead one.
    const fresh = path.join(t.config.stores.thumbnails, `${files[0]}.tmp-999999-abcd1234`);
    const stale = path.join(t.config.stores.originals, 'uk', 'ab', 'cd', 'abcd0000000000000000000000000000.tmp-999998-abcd1234');
    for (const f of [fresh, stale]) {
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, 'half a file');
    }
    const old = new Date(Date.now() - 2 * 3600_000);
    fs.utimesSync(stale, old, old);
    const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: shared });
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.equal(fs.existsSync(fresh), true, 'a write that may be in progress on another host is left alone');
    assert.equal(fs.existsSync(stale), false, "one untouched for over an hour is a dead writer's");
    assert.match(run.output(), /thumbnails 0 orphans\/0 partial\/0 redone; originals 0 orphans\/1 partial/);
  });

  it("a host's run killed outright (SIGKILL) leaves no lock behind: the next run of another host does the shared part", async function () {
    this.timeout(120_000);
    await sql`UPDATE live_images SET last_seen = now() - interval '40 days'`.execute(t.db);
    const first = await t.db.selectFrom('live_images').select('id').orderBy('id').executeTakeFirstOrThrow();
    const held = await runHeldOnRow(t, configFile, first.id, ['--db_scan', '--country', 'uk'], "host A's run to wait on the row");
    try {
      held.run.child.kill('SIGKILL');
      await held.run.exited;
    } finally {
      await held.release();
    }
    // The server ends a dead client's session when it notices; then its lock is free.
    await waitFor(
      async () =>
        (
          await sql`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(
            t.db,
          )
        ).rows.length === 0,
      30_000,
      "the killed run's session to end",
    );
    const run = spawnTs('bin/lis_cron_frontend', ['--db_scan', '--country', 'uk'], { LIS_CONFIG: configB });
    assert.equal((await run.exited).code, 0, run.output());
    assert.match(run.output(), /Summary for UK in [\d.]+s: db_scan: 6 purged, 0 deferred/);
    assert.deepEqual(await countBy(t.db), {});
  });
});
