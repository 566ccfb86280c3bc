import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { sql } from 'kysely';
import path from 'node:path';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { addFrontend, removeFrontend, setFrontendEnabled } from '../src/push/frontend-registry.ts';
import { frontendLag } from '../src/push/frontend-lag.ts';
import { insertPushRows } from './helpers/push-fixtures.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { FRONTEND_MARKER } from '../src/push/frontend-root-check.ts';
import { runPusherOnce } from './helpers/run-pusher.ts';
import { waitFor } from './helpers/processes.ts';
import { countBy, relistAll } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** Every file below `root`, relative, hidden ones (rsync's temp files) included; not a local frontend root's own marker. */
function allFiles(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .filter((f) => path.basename(f) !== FRONTEND_MARKER);
}

describe('lis_pusherd against faulty frontends', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  const mounts: string[] = [];
  const daemons: RsyncDaemon[] = [];

  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
    await t.drop();
  });

  /** A 1 MB tmpfs at `dir` (root only), unmounted after the test whatever happens. */
  function smallDisk(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    mounts.push(dir);
  }

  const runPusher = (overrides: LisConfigInput = {}, chunkSize = 40) => runPusherOnce(t, overrides, chunkSize);

  for (const kind of ['local', 'daemon'] as const) {
    it(`a ${kind} frontend whose disk fills mid-push: frontend_disk_full, nothing charged, no temp file left, and all goes live once freed`, async () => {
      const disk = path.join(t.dir, `disk-${kind}`);
      smallDisk(disk);
      let target = path.join(disk, 'root');
      if (kind === 'daemon') {
        const d = await RsyncDaemon.start(path.join(t.dir, 'd1'));
        daemons.push(d);
        fs.rmSync(d.moduleDir, { recursive: true });
        fs.symlinkSync(disk, d.moduleDir);
        target = d.url('root');
      }
      await addFrontend(t.db, 'n1', target);
      // Leave ~60 KB free: the 6 rows' thumbnails (~330 KB) do not fit.
      fs.writeFileSync(path.join(disk, 'filler'), Buffer.alloc(1024 * 1024 - 60 * 1024));
      const files = await insertPushRows(t.db, t.config, 'uk', 6);
      // Given back for our fault, the rows are due again at once: the second run is the retry.
      const retrySoon = { queue: { backoff: { baseSeconds: 0.01, jitter: 0 }, oursRetrySeconds: 0.01 } };
      await runPusher(retrySoon);
      const rows = await t.db.selectFrom('live_images').select(['stage', 'state', 'attempts', 'last_error', 'last_error_class']).execute();
      for (const r of rows) {
        assert.deepEqual([r.stage, r.state, r.attempts, r.last_error_class], ['push', 'waiting', 0, 'frontend_disk_full'], JSON.stringify(r));
        assert.match(r.last_error!, /^not on n1 \(rsync exit 11 .*No space left on device/);
      }
      const [n1] = await t.db.selectFrom('frontends').select(['down_since', 'down_reason']).execute();
      assert.ok(n1.down_since, 'the frontend is marked down (what the manager alerts on)');
      assert.match(n1.down_reason!, /^frontend_disk_full: .*No space left on device/);
      // rsync removed its temp file of the write that failed; nothing half-written under a real name.
      assert.deepEqual(
        allFiles(disk).filter((f) => path.basename(f).startsWith('.')),
        [],
      );
      for (const f of allFiles(path.join(disk, 'root')))
        assert.ok(fs.readFileSync(path.join(disk, 'root', f)).equals(fs.readFileSync(path.join(t.config.stores.thumbnails, f))), f);

      fs.rmSync(path.join(disk, 'filler'));
      await runPusher(retrySoon);
      const after = await t.db.selectFrom('live_images').select(['stage', 'attempts']).execute();
      assert.deepEqual(
        after.map((r) => [r.stage, r.attempts]),
        after.map(() => ['live', 0]),
      );
      assert.equal(allFiles(path.join(disk, 'root')).length, files.length);
      assert.equal((await t.db.selectFrom('frontends').select('down_since').executeTakeFirstOrThrow()).down_since, null);
    });
  }

  for (const how of ['disabled', 'removed'] as const) {
    it(`a frontend ${how} while its rsync hangs no longer holds the chunk back: the rows go live in the same pass, uncharged`, async () => {
      const good = path.join(t.dir, 'good');
      await addFrontend(t.db, 'good', good);
      // A "frontend" that accepts the connection and never says a word: rsync waits there until --timeout.
      const sockets: net.Socket[] = [];
      let changed: Promise<void> | undefined;
      const hang = net.createServer((socket) => {
        sockets.push(socket);
        // rsync is now in flight to it: the operator gives up on it.
        changed ??= how === 'disabled' ? setFrontendEnabled(t.db, 'hung', false) : removeFrontend(t.db, 'hung');
      });
      await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
      try {
        await addFrontend(t.db, 'hung', `rsync://127.0.0.1:${(hang.address() as net.AddressInfo).port}/thumbs`);
        const files = await insertPushRows(t.db, t.config, 'uk', 3);
        // Rows given back for our fault wait a minute (the default): within this test that means "not live".
        await runPusher({ push: { timeoutSeconds: 2, connectTimeoutSeconds: 2 } });
        assert.ok(changed, 'rsync connected to the hung frontend');
        await changed;
        const rows = await t.db.selectFrom('live_images').select(['stage', 'state', 'attempts', 'last_error_class']).execute();
        assert.deepEqual(
          rows.map((r) => [r.stage, r.state, r.attempts]),
          rows.map(() => ['live', 'done', 0]),
          JSON.stringify(rows),
        );
        assert.deepEqual(allFiles(good).sort(), [...files].sort());
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise((resolve) => hang.close(resolve));
      }
    });
  }

  it('a local frontend whose disk is not mounted is down: its rows fail frontend_down uncharged, nothing is written in its place, and they go live once it is back', async () => {
    const mount = path.join(t.dir, 'mnt', 'n3');
    const root = path.join(mount, 'thumbs');
    await addFrontend(t.db, 'n3', root);
    assert.ok(fs.statSync(root).isDirectory(), 'adding a local frontend creates its root');
    // The disk goes away (not mounted at boot): its root goes with it.
    fs.rmSync(mount, { recursive: true });
    const pushFiles = await insertPushRows(t.db, t.config, 'uk', 3);
    // Live already, so only backfill sends them to n3.
    const liveFiles = await insertPushRows(t.db, t.config, 'uk', 2, { stage: 'live', prefix: 'http://img.example.com/uk/live-' });
    const retrySoon = { queue: { backoff: { baseSeconds: 0.01, jitter: 0 }, oursRetrySeconds: 0.01 } };

    await runPusher(retrySoon);
    const rows = await t.db
      .selectFrom('live_images')
      .select(['stage', 'state', 'attempts', 'last_error', 'last_error_class'])
      .where('stage', '=', 'push')
      .execute();
    assert.equal(rows.length, 3);
    for (const r of rows) {
      assert.deepEqual([r.stage, r.state, r.attempts, r.last_error_class], ['push', 'waiting', 0, 'frontend_down'], JSON.stringify(r));
      assert.equal(
        r.last_error,
        `not on n3 (frontend n3's root ${root} is missing (not mounted?); if its disk was replaced by an empty one, make the folder (mkdir -p ${root}) and send everything again: lis frontend enable n3 --full)`,
      );
    }
    const backfilled = await t.db.selectFrom('frontend_pushes').select(['pushed_at', 'last_error']).execute();
    assert.equal(backfilled.filter((p) => p.pushed_at === null && p.last_error?.includes('is missing (not mounted?)')).length, 5, JSON.stringify(backfilled));
    assert.equal(fs.existsSync(mount), false, 'nothing is created where the disk should be');
    const n3 = await t.db.selectFrom('frontends').select(['down_since', 'down_reason']).executeTakeFirstOrThrow();
    assert.ok(n3.down_since, 'marked down (what the manager alerts on)');
    assert.ok(n3.down_reason!.startsWith(`frontend_down: frontend n3's root ${root} is missing (not mounted?); if its disk was replaced`), n3.down_reason!);

    fs.mkdirSync(root, { recursive: true });
    await runPusher(retrySoon);
    const after = await t.db.selectFrom('live_images').select(['stage', 'attempts']).execute();
    assert.deepEqual(
      after.map((r) => [r.stage, r.attempts]),
      after.map(() => ['live', 0]),
    );
    assert.deepEqual(allFiles(root).sort(), [...pushFiles, ...liveFiles].sort());
    assert.equal((await t.db.selectFrom('frontends').select('down_since').executeTakeFirstOrThrow()).down_since, null);
  });

  it('a local frontend whose root is itself the mount point: with the disk away, the empty folder is not filled, its rows wait uncharged, and go live once it is back', async () => {
    // The frontend's disk, bind-mounted on its root, as a separate disk mounted at /srv/thumbs would be.
    const disk = path.join(t.dir, 'disk-n3');
    const root = path.join(t.dir, 'srv-n3');
    fs.mkdirSync(disk);
    await addFrontend(t.db, 'n3', root);
    execFileSync('mount', ['--bind', disk, root]);
    mounts.push(root);
    const first = await insertPushRows(t.db, t.config, 'uk', 3);
    await runPusher();
    assert.deepEqual(allFiles(disk).sort(), [...first].sort(), 'pushed to the disk');
    assert.ok(fs.existsSync(path.join(disk, FRONTEND_MARKER)), 'the root is marked at its first push');

    // The disk goes away (a reboot without it): what is left is the empty folder it was mounted on.
    execFileSync('umount', [root]);
    mounts.splice(mounts.indexOf(root), 1);
    const second = await insertPushRows(t.db, t.config, 'uk', 2, { prefix: 'http://img.example.com/uk/later-' });
    await runPusher({ queue: { backoff: { baseSeconds: 0.01, jitter: 0 }, oursRetrySeconds: 0.01 } });
    const waiting = await t.db.selectFrom('live_images').select(['stage', 'attempts', 'last_error', 'last_error_class']).where('stage', '=', 'push').execute();
    assert.equal(waiting.length, 2);
    for (const r of waiting) {
      assert.deepEqual([r.attempts, r.last_error_class], [0, 'frontend_down'], JSON.stringify(r));
      assert.match(r.last_error!, /root .*srv-n3 is empty and has no \.imagesys-frontend, but rows were pushed there: is its disk mounted\?/);
    }
    assert.deepEqual(fs.readdirSync(root), [], "nothing is written in the disk's place");

    execFileSync('mount', ['--bind', disk, root]);
    mounts.push(root);
    await runPusher({ queue: { backoff: { baseSeconds: 0.01, jitter: 0 }, oursRetrySeconds: 0.01 } });
    const after = await t.db.selectFrom('live_images').select(['stage', 'attempts']).execute();
    assert.deepEqual(
      after.map((r) => [r.stage, r.attempts]),
      after.map(() => ['live', 0]),
    );
    assert.deepEqual(allFiles(disk).sort(), [...first, ...second].sort());
  });

  it("a local frontend's disk replaced by an empty one: its new rows wait uncharged while the live stay live; enabled with --full, one run by hand refills it and they go live", async () => {
    const root = path.join(t.dir, 'n3');
    await addFrontend(t.db, 'n1', path.join(t.dir, 'n1'));
    await addFrontend(t.db, 'n3', root);
    const first = await insertPushRows(t.db, t.config, 'uk', 3);
    await runPusher();
    // The new disk, empty, mounted at the root: no marker, and rows were pushed there.
    fs.rmSync(root, { recursive: true });
    fs.mkdirSync(root);
    const second = await insertPushRows(t.db, t.config, 'uk', 2, { prefix: 'http://img.example.com/uk/later-' });
    // Rows given back for our fault wait queue.oursRetrySeconds (60), as in production.
    await runPusher({ queue: { backoff: { baseSeconds: 0.01, jitter: 0 } } });
    assert.deepEqual(await countBy(t.db), { 'live/done': 3, 'push/waiting': 2 }, 'the live rows stay live');
    assert.deepEqual(
      (await t.db.selectFrom('live_images').select(['attempts', 'last_error_class']).where('stage', '=', 'push').execute()).map((r) => [
        r.attempts,
        r.last_error_class,
      ]),
      [
        [0, 'frontend_down'],
        [0, 'frontend_down'],
      ],
    );
    assert.deepEqual(fs.readdirSync(root), [], 'nothing written on the empty disk yet');

    // The operator: `lis frontend enable n3 --full`. Before, the two rows still waited out their 60 s.
    await setFrontendEnabled(t.db, 'n3', true, { forget: true });
    await runPusher({ queue: { backoff: { baseSeconds: 0.01, jitter: 0 } } });
    assert.deepEqual(await countBy(t.db), { 'live/done': 5 });
    assert.deepEqual(allFiles(root).sort(), [...first, ...second].sort(), 'n3 has every file again');
  });

  it('a frontend that fails only during backfill is marked down (the manager alerts on it) and cleared once backfill reaches it', async () => {
    const d = await RsyncDaemon.start(path.join(t.dir, 'n1'));
    daemons.push(d);
    await d.stop();
    // Everything is live already (a quiet country): backfill is the only traffic the new frontend gets.
    const files = await insertPushRows(t.db, t.config, 'uk', 3, { stage: 'live' });
    await addFrontend(t.db, 'n1', d.url());
    await runPusher();
    const down = await t.db.selectFrom('frontends').select(['down_since', 'down_reason']).executeTakeFirstOrThrow();
    assert.ok(down.down_since, 'marked down');
    assert.match(down.down_reason!, /^frontend_down: rsync exit 10 .*Connection refused/);

    await d.start();
    await runPusher();
    assert.deepEqual(allFiles(d.moduleDir).sort(), [...files].sort());
    const up = await t.db.selectFrom('frontends').select(['down_since', 'down_reason']).executeTakeFirstOrThrow();
    assert.deepEqual(up, { down_since: null, down_reason: null });
  });

  it("a frontend's outage does not back its push records off: once back (re-enabled, or new), one backfill pass catches it up, however long it was down", async () => {
    const n2 = await RsyncDaemon.start(path.join(t.dir, 'n2'));
    const n3 = await RsyncDaemon.start(path.join(t.dir, 'n3'));
    daemons.push(n2, n3);
    await addFrontend(t.db, 'n1', path.join(t.dir, 'n1'));
    await addFrontend(t.db, 'n2', n2.url());
    await n2.stop();
    const files = await insertPushRows(t.db, t.config, 'uk', 4);
    // The queue's own backoff (30 s, doubling to 6 h), as in production; rows given back for our fault are due at once.
    const real = { queue: { backoff: { baseSeconds: 30, jitter: 0 }, oursRetrySeconds: 0.01 } };
    // n2 is down through several tries of the rows (hours of them, in production), then disabled: the rows go live.
    for (let i = 0; i < 4; i++) await runPusher(real);
    assert.deepEqual(
      (await t.db.selectFrom('live_images').select(['stage', 'attempts']).execute()).map((r) => [r.stage, r.attempts]),
      files.slice(0, 4).map(() => ['push', 0]),
    );
    await setFrontendEnabled(t.db, 'n2', false);
    await runPusher(real);
    // A new frontend, n3, is down too: its backfill fails pass after pass.
    await addFrontend(t.db, 'n3', n3.url());
    await n3.stop();
    for (let i = 0; i < 3; i++) await runPusher(real);
    assert.ok((await t.db.selectFrom('frontends').select('down_since').where('name', '=', 'n3').executeTakeFirstOrThrow()).down_since);

    // Both are back (n2 re-enabled): the next run by hand (one backfill pass) gives them everything.
    await n2.start();
    await n3.start();
    await setFrontendEnabled(t.db, 'n2', true);
    await runPusher(real);
    assert.deepEqual(allFiles(n2.moduleDir).sort(), [...files].sort(), 'n2 has every file');
    assert.deepEqual(allFiles(n3.moduleDir).sort(), [...files].sort(), 'n3 has every file');
    assert.deepEqual(
      (await frontendLag(t.db)).map((l) => [l.frontend, l.total]),
      [
        ['n1', 0],
        ['n2', 0],
        ['n3', 0],
      ],
    );
    assert.deepEqual(
      await t.db.selectFrom('frontends').select(['name', 'down_since']).where('down_since', 'is not', null).execute(),
      [],
      'none left marked down',
    );
  });

  it('a frontend that refuses one pushing host (its rsync password wrong) stays marked down, naming that host, while another host pushes to it fine', async () => {
    const d = await RsyncDaemon.start(path.join(t.dir, 'n1'));
    daemons.push(d);
    // An rsync daemon with `auth users`: web1 has the right password, web2 a wrong one (a host set up by hand).
    const secrets = path.join(t.dir, 'rsyncd.secrets');
    fs.writeFileSync(secrets, 'push:right\n', { mode: 0o600 });
    fs.appendFileSync(path.join(d.dir, 'rsyncd.conf'), `  auth users = push\n  secrets file = ${secrets}\n`);
    await d.stop();
    await d.start();
    await addFrontend(t.db, 'n1', d.url().replace('rsync://', 'rsync://push@'));
    const passwordFile = (host: string, password: string) => {
      const file = path.join(t.dir, `${host}.password`);
      fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
      return file;
    };
    const web1 = { host: 'web1', push: { daemonPasswordFile: passwordFile('web1', 'right') } };
    // Rows given back for our fault are due again at once: web2's next run is their retry.
    const web2 = {
      host: 'web2',
      push: { daemonPasswordFile: passwordFile('web2', 'wrong') },
      queue: { backoff: { baseSeconds: 0.01, jitter: 0 }, oursRetrySeconds: 0.01 },
    };
    await insertPushRows(t.db, { ...t.config, host: 'web1' }, 'uk', 2, { prefix: 'http://img.example.com/web1/' });
    await insertPushRows(t.db, { ...t.config, host: 'web2' }, 'uk', 2, { prefix: 'http://img.example.com/web2/' });
    const frontend = () => t.db.selectFrom('frontends').select(['down_since', 'down_reason', 'down_host']).executeTakeFirstOrThrow();

    await runPusher(web2);
    const down = await frontend();
    assert.ok(down.down_since, 'marked down');
    assert.match(down.down_reason!, /^rsync_error: rsync exit 5 .*auth failed on module thumbs/);
    // web1's pushes go through: n1 is up for web1, not for web2, whose rows wait; the mark (what the alert reads) stays.
    await runPusher(web1);
    assert.deepEqual(await frontend(), down);
    assert.equal(down.down_host, 'web2', 'the alert can say which host it refuses');
    assert.deepEqual(
      (await t.db.selectFrom('live_images').select(['store_host', 'stage']).orderBy('id').execute()).map((r) => `${r.store_host} ${r.stage}`),
      ['web1 live', 'web1 live', 'web2 push', 'web2 push'],
    );
    // web2's password put right: its pushes clear it.
    fs.writeFileSync(web2.push.daemonPasswordFile, 'right\n');
    await runPusher(web2);
    assert.deepEqual(await frontend(), { down_since: null, down_reason: null, down_host: null });
  });

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`our rsync killed by ${signal} mid-transfer (the OOM killer, an operator's kill) is our fault, not the frontend's: not marked down, rows given back uncharged, live on the retry`, async () => {
      const root = path.join(t.dir, 'n1');
      await addFrontend(t.db, 'n1', root);
      // The real rsync, which says its pid (exec keeps it) so that the test can kill it once files are moving.
      const pidFile = path.join(t.dir, 'rsync.pid');
      const wrapper = path.join(t.dir, 'rsync-wrapper');
      fs.writeFileSync(wrapper, `#!/bin/sh\n[ "$1" = --version ] || echo $$ > '${pidFile}'\nexec rsync "$@"\n`, { mode: 0o755 });
      const files = await insertPushRows(t.db, t.config, 'uk', 4);
      // 10 KB/s: the chunk (~220 KB) takes many seconds, so the kill lands mid-transfer.
      // Given back for our fault, the rows wait queue.oursRetrySeconds (a minute): the run ends with them not live.
      const killed = runPusher({ push: { rsyncPath: wrapper, bwLimit: '10' } });
      await waitFor(() => fs.existsSync(pidFile) && allFiles(root).some((f) => path.basename(f).startsWith('.')), 20_000, 'a temp file of the transfer');
      process.kill(Number(fs.readFileSync(pidFile, 'utf8')), signal);
      await killed;
      const rows = await t.db.selectFrom('live_images').select(['stage', 'state', 'attempts', 'last_error', 'last_error_class']).execute();
      for (const r of rows) {
        assert.deepEqual([r.stage, r.state, r.attempts, r.last_error_class], ['push', 'waiting', 0, 'rsync_killed'], JSON.stringify(r));
        assert.match(
          r.last_error!,
          signal === 'SIGKILL'
            ? /^not on n1 \(rsync killed by SIGKILL on this host/
            : /^not on n1 \(rsync exit 20 \(received SIGINT, SIGTERM, or SIGHUP\) on this host/,
        );
      }
      const n1 = await t.db.selectFrom('frontends').select(['down_since', 'down_reason']).executeTakeFirstOrThrow();
      assert.deepEqual(n1, { down_since: null, down_reason: null }, 'the frontend is not marked down (no alert) for our own process dying');
      // Their retry (the minute made up; no kill this time) pushes them all.
      await sql`UPDATE live_images SET next_attempt_at = now()`.execute(t.db);
      await relistAll(t.db);
      await runPusher();
      const after = await t.db.selectFrom('live_images').select(['stage', 'attempts']).execute();
      assert.deepEqual(
        after.map((r) => [r.stage, r.attempts]),
        after.map(() => ['live', 0]),
      );
      assert.deepEqual(
        allFiles(root)
          .filter((f) => !path.basename(f).startsWith('.'))
          .sort(),
        [...files].sort(),
      );
    });
  }

  it("the frontend's rsync killed on its side (a frontend shutting down signals it) stays the frontend's: marked down, rows uncharged", async () => {
    const d = await RsyncDaemon.start(path.join(t.dir, 'd1'));
    daemons.push(d);
    await addFrontend(t.db, 'n1', d.url());
    await insertPushRows(t.db, t.config, 'uk', 4);
    const daemonPid = Number(fs.readFileSync(path.join(d.dir, 'rsyncd.pid'), 'utf8'));
    const ppidOf = (pid: string) => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1];
    /** The daemon's processes serving our connection: its child, and the generator that child forks. */
    const serving = () =>
      fs
        .readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .filter((e) => {
          try {
            const ppid = ppidOf(e);
            return ppid === String(daemonPid) || ppidOf(ppid) === String(daemonPid);
          } catch {
            return false;
          }
        })
        .map(Number);
    const run = runPusher({ push: { bwLimit: '10', timeoutSeconds: 5 } });
    await waitFor(() => allFiles(d.moduleDir).some((f) => path.basename(f).startsWith('.')), 20_000, 'a temp file of the transfer');
    for (const pid of serving()) process.kill(pid, 'SIGTERM');
    await run;
    // Our rsync sees the connection reset (exit 10), or the frontend's rsync's own exit 20 passed on (its line ending
    // `[generator=...]`): the frontend's trouble either way, which rsync_killed must not take over.
    const rows = await t.db.selectFrom('live_images').select(['stage', 'attempts', 'last_error_class', 'last_error']).execute();
    for (const r of rows) {
      assert.deepEqual([r.stage, r.attempts], ['push', 0], JSON.stringify(r));
      assert.ok(['frontend_down', 'rsync_error'].includes(r.last_error_class!), JSON.stringify(r));
    }
    const n1 = await t.db.selectFrom('frontends').select(['down_since']).executeTakeFirstOrThrow();
    assert.ok(n1.down_since, 'the frontend is marked down');
  });

  it('a chunk slower than queue.progressTimeoutSeconds (a low push.bwLimit) is not given back while its rsync runs, nor while it waits its turn behind one: pushed once, live, uncharged', async () => {
    const root = path.join(t.dir, 'n1');
    await addFrontend(t.db, 'n1', root);
    const files = await insertPushRows(t.db, t.config, 'uk', 2);
    const rowBytes = [0, 3].map((i) => files.slice(i, i + 3).reduce((n, f) => n + fs.statSync(path.join(t.config.stores.thumbnails, f)).size, 0));
    const started = performance.now();
    // A chunk per row, two at once, one rsync at a time, 16 KB/s: each rsync takes longer than the progress timeout
    // (2.5 s), and the second chunk waits that long for its turn. rsync's own --timeout (2 s) is under it, as the
    // config requires (1 s timed rsync out under load, bwlimit's sleeps and all).
    const totals = await runPusher(
      {
        download: { ...t.config.download, timeouts: { ...t.config.download.timeouts, totalSeconds: 0.5 } },
        thumbnail: { ...t.config.thumbnail, timeoutSeconds: 0.5 },
        push: { ...t.config.push, bwLimit: '16', timeoutSeconds: 2, maxParallel: 1, chunksAtOnce: 2 },
        queue: { ...t.config.queue, progressTimeoutSeconds: 2.5, heartbeatSeconds: 0.2 },
      },
      1,
    );
    const seconds = (performance.now() - started) / 1000;
    assert.ok(
      rowBytes.every((b) => b / 16_384 > 3) && seconds > 6,
      `each rsync outlasted the progress timeout (${rowBytes.join(', ')} bytes in ${seconds.toFixed(1)}s)`,
    );
    // Before, each chunk was given back at 2.5 s while its rsync ran on (or waited), claimed again and sent again.
    assert.equal(totals.released, 0, 'no rows given back as wedged');
    const rows = await t.db.selectFrom('live_images').select(['stage', 'attempts', 'last_error']).execute();
    assert.deepEqual(
      rows.map((r) => [r.stage, r.attempts]),
      rows.map(() => ['live', 0]),
      JSON.stringify(rows),
    );
    assert.deepEqual(allFiles(root).sort(), [...files].sort());
  });
});
