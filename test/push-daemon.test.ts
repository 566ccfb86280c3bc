import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { frontendLag } from '../src/push/frontend-lag.ts';
import { countBy } from './helpers/rows.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { differingFiles, insertPushRows } from './helpers/push-fixtures.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { readLog } from './helpers/log-files.ts';

describe('lis_pusherd and lis frontend (real processes)', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let daemons: RsyncDaemon[] = [];
  beforeEach(async () => {
    t = await createTestDatabase();
    daemons = await Promise.all(['n1', 'n2', 'n3'].map((n) => RsyncDaemon.start(path.join(t.dir, `rsyncd-${n}`))));
  });
  afterEach(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await t.drop();
  });

  async function lis(config: string, ...args: string[]): Promise<string> {
    const run = spawnTs('bin/lis', ['--config', config, ...args]);
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    return run.output();
  }

  it('frontends added with lis frontend add get a chunk byte for byte from bin/lis_pusherd, and the rows go live', async () => {
    const config = t.writeConfig();
    // A space in the path: a checkout under "my sites" puts the demo's frontends there.
    const local = path.join(t.dir, 'frontend local');
    await lis(config, 'frontend', 'add', 'local', local);
    await lis(config, 'frontend', 'add', 'n1', daemons[0].url('live'));
    // The others straight into the table: each `lis` process costs a couple of seconds of start-up.
    for (const i of [1, 2]) await addFrontend(t.db, `n${i + 1}`, daemons[i].url('live'));
    const files = await insertPushRows(t.db, t.config, 'uk', 25);

    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', config, '--chunk-size', '10']);
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.match(run.output(), /INFO Push::get_chunk_of_work\[\d+\]:UK Doing chunk of work for UK \(size 10\)/);
    assert.match(run.output(), /No rows gained\. No work to do\./);
    // The daemon's words with the rows: in one CI run of 2026-11-30, 10 rows were left push/waiting, and why went unsaid
    // (two chunks' rsyncs making n1's new root at once, one losing: see the next test).
    assert.deepEqual(await countBy(t.db), { 'live/done': 25 }, run.output());
    const roots = {
      local,
      n1: path.join(daemons[0].moduleDir, 'live'),
      n2: path.join(daemons[1].moduleDir, 'live'),
      n3: path.join(daemons[2].moduleDir, 'live'),
    };
    for (const [name, root] of Object.entries(roots)) assert.deepEqual(differingFiles(t.config.stores.thumbnails, root, files), [], name);

    const list = await lis(config, 'frontend', 'list');
    assert.match(list, new RegExp(`^n1\tyes\t0\t0\t\\d{4}-.*\t${daemons[0].url('live').replace(/[/.]/g, '\\$&')}$`, 'm'));
    assert.match(list, /^local\tyes\t0\t0\t/m);
  });

  it('an rsync that loses the race to make a new frontend root (mkdir: File exists, exit 11) is run again, and the rows go live', async () => {
    // Two chunks at once on a new frontend each run an rsync that finds its root missing and makes it; the one
    // made second fails: `mkdir "live" (in thumbs) failed: File exists (17)`. That rsync is lost here every
    // time: its root is a link to a folder not there yet (missing to its look, there to its mkdir), which the
    // daemon's pre-transfer hook makes when the second connection comes.
    const d = daemons[0];
    fs.symlinkSync('made-meanwhile', path.join(d.moduleDir, 'live'));
    const connections = path.join(t.dir, 'connections');
    const hook = path.join(t.dir, 'pre-xfer.sh');
    fs.writeFileSync(
      hook,
      `#!/bin/sh\necho x >> '${connections}'\n[ "$(wc -l < '${connections}')" -ge 2 ] && mkdir -p '${path.join(d.moduleDir, 'made-meanwhile')}'\nexit 0\n`,
      { mode: 0o755 },
    );
    // The daemon reads its configuration again for each connection.
    fs.appendFileSync(path.join(d.dir, 'rsyncd.conf'), `  pre-xfer exec = ${hook}\n`);
    await addFrontend(t.db, 'n1', d.url('live'));
    const files = await insertPushRows(t.db, t.config, 'uk', 5);

    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', t.writeConfig()]);
    assert.equal((await run.exited).code, 0, run.output());
    assert.deepEqual(await countBy(t.db), { 'live/done': 5 }, run.output());
    assert.equal(fs.readFileSync(connections, 'utf8'), 'x\nx\n', 'one rsync lost, the same run again went through');
    // The retry is in the log: the operator sees why there were two connections.
    assert.match(
      run.output(),
      /INFO .*n1: 5 rows, \d+ files .* \(run twice: the first rsync lost the race to make the destination folder: .*File exists \(17\)/,
      run.output(),
    );
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, path.join(d.moduleDir, 'live'), files), []);
  });

  it("Ctrl-C at a terminal during start-up's rsync check stops the run with exit 0, rows untouched, not as rsync missing", async () => {
    await addFrontend(t.db, 'local', path.join(t.dir, 'frontend'));
    await insertPushRows(t.db, t.config, 'uk', 3);
    // An rsync whose --version waits until the test has sent its Ctrl-C (a marker file says it has begun).
    const begun = path.join(t.dir, 'version-begun');
    const go = path.join(t.dir, 'version-go');
    const rsync = path.join(t.dir, 'rsync-held');
    fs.writeFileSync(rsync, `#!/bin/sh\nif [ "$1" = --version ]; then touch '${begun}'; while [ ! -e '${go}' ]; do sleep 0.05; done; fi\nexec rsync "$@"\n`, {
      mode: 0o755,
    });
    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', t.writeConfig({ push: { rsyncPath: rsync } })], {}, undefined, { detached: true });
    const pid = run.child.pid!;
    try {
      await waitFor(() => fs.existsSync(begun) || run.child.exitCode !== null, 20_000, 'the rsync check begun');
      process.kill(-pid, 'SIGINT');
      await waitFor(() => /SIGINT received/.test(run.output()) || run.child.exitCode !== null, 10_000, 'the SIGINT taken');
      fs.writeFileSync(go, '');
      // Before, the check died of the SIGINT too: "rsync --version did not run as rsync (exit null): install rsync", exit 1.
      assert.equal((await run.exited).code, 0, run.output());
      assert.doesNotMatch(run.output(), /install rsync/);
      assert.deepEqual(await countBy(t.db), { 'push/waiting': 3 }, run.output());
      assert.equal((await t.db.selectFrom('live_images').select('id').where('attempts', '>', 0).execute()).length, 0);
    } finally {
      fs.writeFileSync(go, '');
      if (run.child.exitCode === null) process.kill(-pid, 'SIGKILL');
    }
  });

  it('a run by hand with a frontend down ends saying how many rows wait for a retry, until when and why, and exits 0', async () => {
    await addFrontend(t.db, 'n1', daemons[0].url('live'));
    await addFrontend(t.db, 'n2', daemons[1].url('live'));
    await daemons[1].stop();
    await insertPushRows(t.db, t.config, 'uk', 12);
    // The run's last reads through a relay that holds the second of them (the rows other workers hold) 1.5 s on its
    // way to the server: the retry times, read first, are told on this host's clock as of their own read, not
    // moved by the reads after it (a host time taken after all of them said a second or more too late).
    const relay = await startDatabaseProxy(t.url);
    relay.delaySent('LEFT JOIN workers w ON w.id = li.locked_by', 1500);
    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', t.writeConfig({ database: { url: relay.url } }), '--chunk-size', '5']);
    try {
      assert.equal((await run.exited).code, 0, run.output());
    } finally {
      await relay.cut();
    }
    assert.deepEqual(await countBy(t.db), { 'push/waiting': 12 }, run.output());
    // Given back for our fault (queue.oursRetrySeconds, 60 s): the line names the time the last of them is due.
    const { rows } = await sql<{ last: Date }>`SELECT max(next_attempt_at) AS last FROM live_images`.execute(t.db);
    // Said on this host's clock, from the database's time beside this host's as the read came back (toHostClock): a
    // few ms later than the value read here, so a value that close below a whole second is said as the next one.
    // 250 ms bounds that one read on a loaded machine; any more, and the line was not translated from its own read.
    const last = rows[0].last.getTime();
    const dues = [...new Set([last, last + 250].map((ms) => Math.ceil(ms / 1000) * 1000))].map((ms) => new Date(ms));
    const hhmmss = (d: Date) => [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
    const clock = `(?:${dues.map(hhmmss).join('|')})`;
    // A time not on the run's day carries its date (`Dec 01 00:00:45`): a run near midnight says so.
    const DAY = String.raw`(?:[A-Z][a-z]{2} \d\d )?`;
    const lines = run.output().trimEnd().split('\n');
    const said = String.raw`WARN Push::get_chunk_of_work\[\d+\]:UK No rows gained\. No work to do\. 12 rows wait for a retry (from ${DAY}\d\d:\d\d:\d\d )?until ${DAY}${clock} `;
    const why = String.raw`\(frontend_down: not on n2 \(rsync exit 10 .*Connection refused.*\); run again then, or start the service\.$`;
    assert.match(lines.at(-2)!, new RegExp(said + why), run.output());
    assert.match(lines.at(-1)!, /Exiting\(time_to_die: 0\)$/);
    // What an operator woken by the frontend_down alert reads: since when, from which pushing host, why.
    const list = await lis(t.writeConfig(), 'frontend', 'list');
    assert.match(
      list,
      new RegExp(
        `^n2\tyes\t0\t12\t-\t.*\n\tdown since \\d{4}-\\S+ \\(from lis_pusherd on ${t.config.host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\): frontend_down: rsync exit 10 .*Connection refused`,
        'm',
      ),
    );
    assert.doesNotMatch(list, /^n1\t.*\n\tdown since/m);
  });

  it('Ctrl-C at a terminal (SIGINT to the whole process group) lets the rsync in hand finish: the chunk goes live, nothing held back, no frontend marked down', async () => {
    const local = path.join(t.dir, 'frontend');
    await addFrontend(t.db, 'local', local);
    const files = await insertPushRows(t.db, t.config, 'uk', 12);
    // Throttled so that the chunk's rsync runs about a second: the Ctrl-C comes while it copies.
    const bytes = files.reduce((n, rel) => n + fs.statSync(path.join(t.config.stores.thumbnails, rel)).size, 0);
    const config = t.writeConfig({ push: { bwLimit: `${Math.max(1, Math.ceil(bytes / 1024))}k` } });
    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', config], {}, undefined, { detached: true });
    const pid = run.child.pid!;
    // The chunk's transfer, not the start-up's `rsync --version` (a Ctrl-C then is the next test's). Known by its own
    // argument, not by lacking `--version`: while a process execs, its name already says rsync but its cmdline reads
    // empty (seen in about one sighting in ten), and the check's rsync was taken for the transfer (CI, 62cb4cf).
    const rsyncOf = (parent: number) =>
      fs.readdirSync('/proc').some((entry) => {
        try {
          const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
          const transfer = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes('--files-from=-');
          return /^\d+ \(rsync\) [RSD] (\d+)/.exec(stat)?.[1] === String(parent) && transfer;
        } catch {
          return false;
        }
      });
    try {
      await waitFor(() => rsyncOf(pid) || run.child.exitCode !== null, 10_000, 'the chunk in rsync');
      process.kill(-pid, 'SIGINT');
      const { code } = await run.exited;
      // Before, rsync died of the SIGINT (exit 20): the 12 rows failed rsync_error, held back 60 s, the frontend marked down.
      assert.equal(code, 0, run.output());
      assert.match(run.output(), /SIGINT received: finishing the rows in hand/);
      assert.deepEqual(await countBy(t.db), { 'live/done': 12 }, run.output());
      assert.equal((await t.db.selectFrom('live_images').select('id').where('last_error_class', 'is not', null).execute()).length, 0);
      assert.equal((await t.db.selectFrom('frontends').select('down_since').executeTakeFirstOrThrow()).down_since, null);
      assert.deepEqual(differingFiles(t.config.stores.thumbnails, local, files), []);
    } finally {
      if (run.child.exitCode === null) process.kill(-pid, 'SIGKILL');
    }
  });

  it('lis frontend add refuses a target that does not parse, or a bad name, as a usage error (exit 2), before connecting', async () => {
    // A database nobody listens on: reaching for it would fail with exit 1 and "cannot connect".
    const config = t.writeConfig({ database: { url: 'postgres://nobody@127.0.0.1:1/none' } });
    for (const target of ['../../etc', 'not a target']) {
      const run = spawnTs('bin/lis', ['--config', config, 'frontend', 'add', 'n4', target], { LIS_DATABASE_URL: '' });
      assert.equal((await run.exited).code, 2, run.output());
      assert.match(run.output(), new RegExp(`^error: frontend target "${target.replace(/\./g, '\\.')}": `, 'm'));
    }
    // So is a name the table would refuse: it exited 1, having connected first.
    const badName = spawnTs('bin/lis', ['--config', config, 'frontend', 'add', 'n 4', '/srv/thumbs'], { LIS_DATABASE_URL: '' });
    assert.equal((await badName.exited).code, 2, badName.output());
    assert.match(badName.output(), /^error: frontend name "n 4": use 1-64 letters, digits, _ \. -$/m);
  });

  it("a row whose thumbnails are not in the store, or not listed, is given back uncharged, and lis_managerd's bad_retry_jobs sends it back to thumbnail", async () => {
    const config = t.writeConfig();
    await addFrontend(t.db, 'n1', daemons[0].url('live'));
    const files = await insertPushRows(t.db, t.config, 'uk', 3);
    const { rows: ids } = await sql<{ id: string; image_hash: string }>`SELECT id, image_hash FROM live_images ORDER BY id`.execute(t.db);
    // The first lists no files; the second's small thumbnail is gone from the store; the third is whole.
    await sql`UPDATE live_images SET image_data = '{}'::jsonb WHERE id = ${ids[0].id}`.execute(t.db);
    fs.rmSync(
      path.join(
        t.config.stores.thumbnails,
        files.find((f) => f.includes(ids[1].image_hash))!,
      ),
    );
    const push = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', config]);
    assert.equal((await push.exited).code, 0, push.output());
    const after = async () =>
      (
        await sql<{ stage: string; state: string; attempts: number; last_error_class: string | null }>`
          SELECT stage, state, attempts, last_error_class FROM live_images ORDER BY id`.execute(t.db)
      ).rows.map((r) => [r.stage, r.state, r.attempts, r.last_error_class]);
    assert.deepEqual(await after(), [
      ['push', 'waiting', 0, 'no_thumbnails'],
      ['push', 'waiting', 0, 'thumbnail_missing'],
      ['live', 'done', 0, null],
    ]);
    const check = spawnTs('bin/lis_managerd', ['--config', config, '--check', 'bad_retry_jobs']);
    assert.equal((await check.exited).code, 0, check.output());
    assert.match(check.output(), /2 with thumbnails missing from the store sent back to thumbnail/);
    assert.deepEqual(await after(), [
      ['thumbnail', 'waiting', 0, 'no_thumbnails'],
      ['thumbnail', 'waiting', 0, 'thumbnail_missing'],
      ['live', 'done', 0, null],
    ]);
    // Listed for the thumbnail stage's claims, now.
    const { rows: listed } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM claimable_rows WHERE stage = 'thumbnail'`.execute(t.db);
    assert.equal(listed[0].n, 2);
  });

  it('in service mode a frontend added while it runs is backfilled, and it stops cleanly on SIGTERM', async () => {
    const config = t.writeConfig({ queue: { pollSeconds: 0.2 } });
    await lis(config, 'frontend', 'add', 'n1', daemons[0].url());
    const files = await insertPushRows(t.db, t.config, 'uk', 8);
    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', config, '--service']);
    try {
      await waitFor(async () => (await countBy(t.db))['live/done'] === 8, 30_000, 'rows live on n1');
      await lis(config, 'frontend', 'add', 'n2', daemons[1].url());
      await waitFor(() => differingFiles(t.config.stores.thumbnails, daemons[1].moduleDir, files).length === 0, 30_000, 'n2 backfilled');
      // The files are on n2 once its rsync is done; the backfill records them after that: its lag is 0 only then.
      await waitFor(async () => (await frontendLag(t.db)).find((l) => l.frontend === 'n2')?.live === 0, 30_000, "n2's backfill recorded");
      await lis(config, 'frontend', 'disable', 'n1');
      const list = await lis(config, 'frontend', 'list');
      assert.match(list, /^n1\tno\t0\t0\t/m);
      assert.match(list, /^n2\tyes\t0\t0\t/m);
    } finally {
      run.child.kill('SIGTERM');
      const { code } = await run.exited;
      assert.equal(code, 0, run.output());
    }
    const logged = readLog(path.join(t.config.log.dir, 'pusherd.uk.log'));
    assert.match(logged, /INFO Push::backfill\[\d+\]:UK Backfill n2: 8 rows, 24 files \(24 sent/);
    assert.match(logged, /Exiting\(time_to_die: 1\)/);
  });

  it('a missing rsync binary is a clear start-up error', async () => {
    const config = t.writeConfig({ push: { rsyncPath: '/nonexistent/rsync' } });
    const run = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', config]);
    const { code } = await run.exited;
    assert.equal(code, 1, run.output());
    assert.match(run.output(), /rsync not found: install it \(apt-get install rsync\), or fix push\.rsyncPath \(\/nonexistent\/rsync\)/);
  });

  it('lis frontend refuses bad targets and unknown names', async () => {
    const config = t.writeConfig();
    const bad = spawnTs('bin/lis', ['--config', config, 'frontend', 'add', 'n1', 'http://n1/thumbs']);
    assert.equal((await bad.exited).code, 2, 'a usage error');
    assert.match(bad.output(), /frontend target "http:\/\/n1\/thumbs": neither an absolute local path/);
    const unknown = spawnTs('bin/lis', ['--config', config, 'frontend', 'enable', 'n9']);
    assert.equal((await unknown.exited).code, 1);
    assert.match(unknown.output(), /no frontend named n9/);
    await lis(config, 'frontend', 'add', 'n1', './relative-root');
    assert.equal((await t.db.selectFrom('frontends').select('target').executeTakeFirstOrThrow()).target, path.resolve('relative-root'));
    await lis(config, 'frontend', 'remove', 'n1');
    assert.equal((await t.db.selectFrom('frontends').selectAll().execute()).length, 0);
  });
});
