import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { frontendLag } from '../src/push/frontend-lag.ts';
import { addFrontend, setFrontendEnabled } from '../src/push/frontend-registry.ts';
import { BackfillLoop } from '../src/push/backfill.ts';
import { refreshRows } from '../src/queue/refresh-rows.ts';
import { reworkRows } from '../src/queue/rework-rows.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import pLimit from 'p-limit';
import { countBy, relistAll } from './helpers/rows.ts';
import { differingFiles, insertPushRows } from './helpers/push-fixtures.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { TestSshd } from './helpers/sshd.ts';
import { runPusherOnce } from './helpers/run-pusher.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** Frontends of one test: three rsync daemons (shared by the file, a sub-folder per test) and a local path. */
interface Frontends {
  roots: Record<string, string>;
}

describe('lis_pusherd: pushing to rsync daemons, a local path and ssh (in-process)', function () {
  this.timeout(60_000);
  let daemons: RsyncDaemon[] = [];
  let t: TestDatabase;
  let testNo = 0;

  before(async () => {
    const base = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'lis-rsyncd-'));
    daemons = await Promise.all(['n1', 'n2', 'n3'].map((n) => RsyncDaemon.start(path.join(base, n))));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    for (const d of daemons) fs.rmSync(path.dirname(d.dir), { recursive: true, force: true });
  });
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => {
    // A test that stopped a daemon has started it again; make sure for the next one.
    for (const d of daemons) await d.start();
    await t.drop();
  });

  /** n1-n3 on the daemons (module sub-folder per test) and `local` in the test's folder. */
  async function addFrontends(): Promise<Frontends> {
    const sub = `t${++testNo}`;
    const roots: Record<string, string> = { local: path.join(t.dir, 'frontend-local') };
    await addFrontend(t.db, 'local', roots.local);
    for (const [i, d] of daemons.entries()) {
      await addFrontend(t.db, `n${i + 1}`, d.url(sub));
      roots[`n${i + 1}`] = path.join(d.moduleDir, sub);
    }
    return { roots };
  }

  const runPusher = (overrides: LisConfigInput = {}, chunkSize = 40) => runPusherOnce(t, overrides, chunkSize);

  const pushedCount = async (frontend: string) =>
    Number(
      (
        await sql<{ n: string }>`
    SELECT count(*) AS n FROM frontend_pushes WHERE frontend = ${frontend} AND pushed_at IS NOT NULL`.execute(t.db)
      ).rows[0].n,
    );

  it('a chunk reaches three rsync daemons and a local path, byte for byte, and goes live', async () => {
    const { roots } = await addFrontends();
    const files = await insertPushRows(t.db, t.config, 'uk', 30);
    const totals = await runPusher();
    assert.equal(totals.done, 30);
    assert.deepEqual(await countBy(t.db), { 'live/done': 30 });
    for (const [name, root] of Object.entries(roots)) {
      assert.deepEqual(differingFiles(t.config.stores.thumbnails, root, files), [], `${name} has every file`);
      assert.equal(await pushedCount(name), 30);
      const mode = fs.statSync(path.join(root, files[0])).mode & 0o777;
      assert.equal(mode, 0o644, `${name}: readable by the web server`);
      const leftovers = fs.readdirSync(path.join(root, path.dirname(files[0]))).filter((f) => f.startsWith('.'));
      assert.deepEqual(leftovers, [], 'no temp files left behind');
    }
    assert.ok((await frontendLag(t.db)).every((l) => l.total === 0));
  });

  it('with one daemon down its rows are not live, the others have them; when it is back only it is pushed and all go live', async () => {
    const { roots } = await addFrontends();
    const files = await insertPushRows(t.db, t.config, 'uk', 20);
    await daemons[2].stop();
    await runPusher();
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 20 }, 'not live while n3 lacks them');
    const rows = await t.db.selectFrom('live_images').select(['last_error', 'last_error_class', 'attempts']).execute();
    for (const r of rows) {
      assert.equal(r.last_error_class, 'frontend_down');
      assert.match(r.last_error!, /^not on n3 \(rsync exit 10 \(error in socket I\/O\): rsync: .*Connection refused/);
      assert.match(r.last_error!, /; on local, n1, n2$/);
    }
    for (const name of ['local', 'n1', 'n2']) assert.deepEqual(differingFiles(t.config.stores.thumbnails, roots[name], files), [], name);
    assert.ok(!fs.existsSync(roots.n3) || fs.readdirSync(roots.n3).length === 0, 'n3 got nothing');
    const lag = Object.fromEntries((await frontendLag(t.db, { country: 'uk' })).map((l) => [l.frontend, l]));
    assert.equal(lag.n3.push, 20);
    assert.equal(lag.n1.total, 0);
    assert.match(lag.n3.lastError!, /Connection refused/);

    // Several more tries while it stays down: the rows never fail for good.
    for (let i = 0; i < 7; i++) {
      await sql`UPDATE live_images SET next_attempt_at = now()`.execute(t.db);
      await relistAll(t.db);
      await runPusher();
    }
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 20 }, "a frontend outage is not the rows' fault");

    // n1 now lacks a file it was sent: it is not sent again, so only n3 is pushed on the retry.
    fs.rmSync(path.join(roots.n1, files[0]));
    await daemons[2].start();
    await sql`UPDATE live_images SET next_attempt_at = now()`.execute(t.db);
    await relistAll(t.db);
    await runPusher();
    assert.deepEqual(await countBy(t.db), { 'live/done': 20 });
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, roots.n3, files), []);
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, roots.n1, files), [files[0]], 'n1 was not pushed again');
    assert.ok((await frontendLag(t.db)).every((l) => l.total === 0));
  });

  it('a re-enabled frontend is backfilled with what went live while it was disabled; disabling wakes rows waiting for it', async () => {
    const { roots } = await addFrontends();
    await daemons[1].stop();
    const first = await insertPushRows(t.db, t.config, 'uk', 10, { prefix: 'http://img.example.com/first/' });
    await runPusher();
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 10 });
    // Back off far into the future, as after hours of outage: disabling n2 must not leave them waiting that long.
    await sql`UPDATE live_images SET next_attempt_at = now() + interval '1 hour'`.execute(t.db);
    await relistAll(t.db);
    await setFrontendEnabled(t.db, 'n2', false);
    await runPusher();
    assert.deepEqual(await countBy(t.db), { 'live/done': 10 }, 'live once every enabled frontend has them');
    const second = await insertPushRows(t.db, t.config, 'uk', 10, { prefix: 'http://img.example.com/second/' });
    await runPusher();
    assert.deepEqual(await countBy(t.db), { 'live/done': 20 });
    assert.equal((await frontendLag(t.db)).find((l) => l.frontend === 'n2')!.live, 20);

    await daemons[1].start();
    await setFrontendEnabled(t.db, 'n2', true);
    const totals = await runPusher();
    assert.equal(totals.chunks, 0, 'no row left live for the backfill');
    assert.deepEqual(await countBy(t.db), { 'live/done': 20 });
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, roots.n2, [...first, ...second]), []);
    assert.equal(await pushedCount('n2'), 20);
    assert.ok((await frontendLag(t.db)).every((l) => l.total === 0));
  });

  it('a frontend added while live rows are being reworked (re-thumbnailed, refreshed) gets the version the site serves, and its lag says so until then', async () => {
    const n1 = path.join(t.dir, 'n1');
    await addFrontend(t.db, 'n1', n1);
    const files = await insertPushRows(t.db, t.config, 'uk', 6, { stage: 'live' });
    await runPusher();
    const ids = (await t.db.selectFrom('live_images').select('id').orderBy('id').execute()).map((r) => r.id);
    // Rows 1-2 re-thumbnailed (lis rethumbnail), 3-4 refreshed (lis refresh: back to download, no host); the refresh of
    // 4 failed for good (a 404), and 5's came back unchanged (a 304: live again, still of no host). All stay served.
    assert.equal(await reworkRows(t.db, 'thumbnail', { country: 'uk', ids: ids.slice(0, 2) }), 2);
    assert.equal(await refreshRows(t.db, { country: 'uk', olderThanDays: 0, limit: 3 }), 3);
    await sql`UPDATE live_images SET state = 'failed', last_error_class = 'http_404', last_error = 'HTTP 404' WHERE id = ${ids[3]}`.execute(t.db);
    await sql`UPDATE live_images SET stage = 'live', state = 'done' WHERE id = ${ids[4]}`.execute(t.db);
    await relistAll(t.db);
    assert.deepEqual(await countBy(t.db), { 'download/failed': 1, 'download/waiting': 1, 'live/done': 2, 'thumbnail/waiting': 2 });

    const n2 = path.join(t.dir, 'n2');
    await addFrontend(t.db, 'n2', n2);
    const lag = async () => Object.fromEntries((await frontendLag(t.db, { country: 'uk' })).map((l) => [l.frontend, [l.live, l.push]]));
    assert.deepEqual(await lag(), { n1: [0, 0], n2: [6, 0] }, 'n2 lacks all six: it must not join the load balancer yet');
    await runPusher();
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, n2, files), [], 'n2 has the files the site serves');
    assert.deepEqual(await lag(), { n1: [0, 0], n2: [0, 0] });
  });

  it('a stop that came before the backfill was made (SIGTERM during the rsync version check) ends it before any pass', async () => {
    const root = path.join(t.dir, 'frontend-local');
    await addFrontend(t.db, 'local', root);
    const files = await insertPushRows(t.db, t.config, 'uk', 5, { stage: 'live' });
    const log = createLogger({ component: 'pusherd', log: t.config.log, screen: false, country: 'uk' });
    try {
      // By hand, as `lis_pusherd --country uk` runs it: stop() waits for the pass instead of cutting it.
      const options = { config: t.config, db: t.db, log, country: 'uk', chunkSize: 40, limit: pLimit(2), service: false };
      const stopped = new AbortController();
      stopped.abort();
      await new BackfillLoop({ ...options, signal: stopped.signal }).start().stop();
      assert.equal(await pushedCount('local'), 0, 'no pass after the stop');
      // Not stopped, the same loop backfills them: the pass above had work it did not do.
      await new BackfillLoop({ ...options, signal: new AbortController().signal }).start().stop();
      assert.equal(await pushedCount('local'), 5);
      assert.deepEqual(differingFiles(t.config.stores.thumbnails, root, files), []);
    } finally {
      await closeLogger(log);
    }
  });

  it("rsync's own failures: an unknown module, a blocked path and a thumbnail missing from the store", async () => {
    const { roots } = await addFrontends();
    await addFrontend(t.db, 'badmodule', `rsync://127.0.0.1:${daemons[0].port}/nosuchmodule`);
    const files = await insertPushRows(t.db, t.config, 'uk', 4);
    fs.rmSync(path.join(t.config.stores.thumbnails, files[0]));
    await runPusher({}, 10);
    const rows = await t.db.selectFrom('live_images').select(['id', 'last_error', 'last_error_class']).orderBy('id').execute();
    assert.equal(rows[0].last_error_class, 'thumbnail_missing');
    assert.equal(rows[0].last_error, `thumbnail missing from the store: ${files[0]}`);
    for (const r of rows.slice(1)) {
      assert.equal(r.last_error_class, 'rsync_error');
      assert.match(r.last_error!, /^not on badmodule \(rsync exit 5 \(error starting client-server protocol\): @ERROR: Unknown module 'nosuchmodule'/);
    }
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, roots.n1, files.slice(3)), []);

    // A frontend whose root is a file, not a folder: rsync's own words come through, in the row and the record.
    await setFrontendEnabled(t.db, 'badmodule', false);
    const blocked = path.join(t.dir, 'blocked');
    fs.writeFileSync(blocked, 'not a folder');
    await assert.rejects(addFrontend(t.db, 'blocked', blocked), /cannot create frontend blocked's root .*blocked: EEXIST/);
    // Adding made the root; a file put in its place afterwards is rsync's to refuse.
    fs.rmSync(blocked);
    await addFrontend(t.db, 'blocked', blocked);
    fs.rmdirSync(blocked);
    fs.writeFileSync(blocked, 'not a folder');
    await runPusher({}, 10);
    const again = await t.db.selectFrom('live_images').select(['last_error', 'last_error_class']).where('id', '!=', rows[0].id).execute();
    for (const r of again) {
      assert.equal(r.last_error_class, 'rsync_error');
      assert.match(r.last_error!, /^not on blocked \(rsync exit 11 \(error in file I\/O\): rsync: \[Receiver\] mkdir ".*blocked\/" failed: File exists \(17\)/);
    }
    const lag = (await frontendLag(t.db)).find((l) => l.frontend === 'blocked')!;
    assert.equal(lag.push, 4);
    assert.match(lag.lastError!, /File exists/);
  });

  it('holds rows back while no frontend is enabled', async () => {
    await insertPushRows(t.db, t.config, 'uk', 3);
    await runPusher();
    const rows = await t.db.selectFrom('live_images').select(['stage', 'state', 'last_error_class']).execute();
    assert.ok(rows.every((r) => r.stage === 'push' && r.state === 'waiting' && r.last_error_class === 'no_frontends'));
  });

  it('pushes to an ssh target (an sshd on a loopback port, a throw-away key)', async () => {
    const sshd = await TestSshd.start(path.join(t.dir, 'sshd'));
    try {
      const root = path.join(t.dir, 'ssh-frontend', 'thumbs');
      await addFrontend(t.db, 'viassh', `root@127.0.0.1:${root}`);
      const files = await insertPushRows(t.db, t.config, 'uk', 6);
      await runPusher({ push: { sshOptions: [...sshd.clientOptions, '-o', 'BatchMode=yes'] } });
      assert.deepEqual(
        await countBy(t.db),
        { 'live/done': 6 },
        JSON.stringify(await t.db.selectFrom('live_images').select('last_error').execute()) + sshd.output(),
      );
      assert.deepEqual(differingFiles(t.config.stores.thumbnails, root, files), []);
    } finally {
      await sshd.stop();
    }
  });
});
