import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { isRsyncTempName, sweepDeadRunsTempFolders } from '../src/cron/frontend-files.ts';
import { CLOCK_FILE } from '../src/push/frontend-root-check.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { normaliseTarget } from '../src/push/frontend-target.ts';
import { isThumbnailName, originalPath } from '../src/store/store-layout.ts';
import { insertPushRows } from './helpers/push-fixtures.ts';
import { spawnTs } from './helpers/processes.ts';
import { skewedClockEnv } from './helpers/skewed-clock.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { countBy } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const OLD = new Date(Date.now() - 2 * 3600_000);
const copy = (from: string, root: string, rel: string) => {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.copyFileSync(path.join(from, rel), path.join(root, rel));
};
const plant = (root: string, rel: string) => {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), 'not ours?');
  // Old enough to judge (a fresh file may be a write in progress).
  fs.utimesSync(path.join(root, rel), OLD, OLD);
};

describe('frontend targets and fs_check never reach beyond what is ours', () => {
  it('refuses a target with .. before resolving it (../../etc is not /etc)', () => {
    for (const bad of ['../../etc', './a/../../etc', '..', 'front/../..', '/srv/../etc', '..\\etc']) {
      assert.throws(
        () => normaliseTarget(bad, '/tmp/x/y'),
        (e: Error & { code?: string }) => e.code === 'ERR_FRONTEND_TARGET' && /may not contain \.\./.test(e.message),
        bad,
      );
    }
    assert.equal(normaliseTarget('./front', '/tmp/x'), '/tmp/x/front');
  });

  it('knows our own file names', () => {
    assert.ok(isThumbnailName('uk/ab/cd/abcd0000000000000000000000000000_small.jpg', 'uk'));
    assert.ok(isThumbnailName('uk/ab/cd/abcd0000000000000000000000000000_large2.webp'));
    for (const name of [
      'uk/ab/cd/ffff0000000000000000000000000000_small.jpg',
      'uk/ab/cd/README.txt',
      'uk/ab/cd/abcd0000000000000000000000000000_small.jpg.bak',
      'uk/ab/cd/abcd0000000000000000000000000000_small.jpg.tmp-1-ab',
      'uk/ab/notes.jpg',
      'de/ab/cd/abcd0000000000000000000000000000_small.jpg',
    ]) {
      assert.equal(isThumbnailName(name, 'uk'), false, name);
    }
  });

  it("removes a killed run's temp folder named for this run's own pid (a container's pid 1), not its own", () => {
    const killed = path.join(os.tmpdir(), `lis-list-${process.pid}-Zz99Yy`);
    fs.mkdirSync(killed, { recursive: true });
    try {
      // Before, kept for ever: its pid (this process's) was alive.
      assert.ok(sweepDeadRunsTempFolders() >= 1);
      assert.equal(fs.existsSync(killed), false);
    } finally {
      fs.rmSync(killed, { recursive: true, force: true });
    }
  });

  describe('lis_cron_frontend --fs_check', function () {
    this.timeout(60_000);
    let t: TestDatabase;
    let daemon: RsyncDaemon;
    let local: string;
    let outside: string;
    beforeEach(async () => {
      t = await createTestDatabase();
      daemon = await RsyncDaemon.start(path.join(t.dir, 'n1'));
      local = path.join(t.dir, 'n2');
      fs.mkdirSync(local);
      outside = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-outside-'));
      await addFrontend(t.db, 'n1', daemon.url());
      await addFrontend(t.db, 'n2', local);
    });
    afterEach(async () => {
      await daemon.stop();
      await t.drop();
      fs.rmSync(outside, { recursive: true, force: true });
    });

    it('deletes only files named as ours, keeps unknown ones, and follows no symbolic link out of a target', async () => {
      const orphan = 'uk/ab/cd/abcd0000000000000000000000000000_small.jpg';
      const unknown = [
        'uk/ab/cd/README.txt',
        'uk/ab/cd/abcd0000000000000000000000000000_small.jpg.bak',
        'uk/ab/notes.jpg',
        'uk/ab/cd/ffff0000000000000000000000000000_small.jpg',
      ];
      for (const root of [daemon.moduleDir, local]) for (const f of [orphan, ...unknown]) plant(root, f);
      // Links out of the target: a first-level folder, and a whole country, both pointing at files named like ours.
      plant(outside, 'ee/ff/eeff0000000000000000000000000000_small.jpg');
      plant(outside, 'ab/cd/abcd0000000000000000000000000000_small.jpg');
      fs.symlinkSync(path.join(outside, 'ee'), path.join(local, 'uk', 'ee'));
      fs.symlinkSync(outside, path.join(local, 'de'));
      fs.symlinkSync(outside, path.join(daemon.moduleDir, 'de'));

      for (const country of ['uk', 'de']) {
        const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', country], { LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url });
        // A linked folder is not walked, and the run says so and fails: that part of the frontend went unchecked.
        assert.equal((await run.exited).code, 1, run.output());
        if (country === 'uk') {
          assert.match(run.output(), /n1: deleted 1 orphans/);
          assert.match(run.output(), /n2: deleted 1 orphans/);
          assert.match(run.output(), /n2: uk\/ee is a symbolic link: not walked/);
        } else {
          assert.match(run.output(), /n1: deleted 0 orphans/);
          assert.match(run.output(), /n2: deleted 0 orphans/);
          assert.match(run.output(), /n1: de is a symbolic link: not walked/);
          assert.match(run.output(), /n2: de is a symbolic link: not walked/);
        }
      }
      for (const root of [daemon.moduleDir, local]) {
        assert.equal(fs.existsSync(path.join(root, orphan)), false, `our orphan is deleted from ${root}`);
        for (const f of unknown) assert.ok(fs.existsSync(path.join(root, f)), `${f} is not ours: kept in ${root}`);
      }
      assert.ok(fs.existsSync(path.join(outside, 'ee/ff/eeff0000000000000000000000000000_small.jpg')), 'not reached through uk/ee');
      assert.ok(fs.existsSync(path.join(outside, 'ab/cd/abcd0000000000000000000000000000_small.jpg')), 'not reached through de');
      assert.ok(
        fs.lstatSync(path.join(local, 'de')).isSymbolicLink() && fs.lstatSync(path.join(daemon.moduleDir, 'de')).isSymbolicLink(),
        'the links themselves are left as they were',
      );
    });

    it('judges nothing behind a linked folder: no live row re-pushed, no store row sent back, and the run says it did not walk it', async () => {
      // An operator's layout: a country on another disk (n2's uk/, the thumbnail store's uk/) or one folder of it (n1's uk/<aa>).
      // Walked as empty, every live row there would be re-pushed and every row in push sent back to thumbnail, week after week.
      const files = await insertPushRows(t.db, t.config, 'uk', 12, { stage: 'live' });
      await insertPushRows(t.db, t.config, 'uk', 3, { stage: 'push', prefix: 'http://img.example.com/pending/' });
      for (const root of [daemon.moduleDir, local]) for (const f of files) copy(t.config.stores.thumbnails, root, f);
      const moveAndLink = (from: string, to: string) => {
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.renameSync(from, to);
        fs.symlinkSync(to, from);
      };
      moveAndLink(path.join(local, 'uk'), path.join(outside, 'n2-uk'));
      const linkedPrefix = files[0].split('/')[1];
      moveAndLink(path.join(daemon.moduleDir, 'uk', linkedPrefix), path.join(outside, 'n1-prefix'));
      moveAndLink(path.join(t.config.stores.thumbnails, 'uk'), path.join(outside, 'store-uk'));
      const before = await countBy(t.db);

      const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url });
      const { code } = await run.exited;
      assert.deepEqual(await countBy(t.db), before, `nothing re-pushed or sent back: ${run.output()}`);
      assert.equal(code, 1, `a frontend not fully walked is a run that failed: ${run.output()}`);
      assert.match(run.output(), /n2: .*uk is a symbolic link: not walked/);
      assert.match(run.output(), new RegExp(`n1: .*uk/${linkedPrefix} is a symbolic link: not walked`));
      for (const f of files) {
        assert.ok(fs.existsSync(path.join(outside, 'n2-uk', f.slice('uk/'.length))), `${f} kept behind n2's link`);
        assert.ok(fs.existsSync(path.join(daemon.moduleDir, f)), `${f} kept on n1 (through its link or not)`);
      }
    });

    it("deletes a replaced version's files (`.v2` names) once a newer one is live, and keeps both versions of a row being reworked", async () => {
      // Row 1 was reworked twice (v3 live): its v1 and v2 files are orphans. Row 2 is being reworked (v2 served, v3 on its way).
      const files = await insertPushRows(t.db, t.config, 'uk', 2, { stage: 'live' });
      const rows = await t.db.selectFrom('live_images').select(['id', 'image_hash']).orderBy('id').execute();
      const version = (f: string, v: number) => f.replace(/\.jpg$/, `.v${v}.jpg`);
      const of = (hash: string) => files.filter((f) => f.includes(hash));
      await sql`UPDATE live_images SET image_data = replace(image_data::text, '.jpg"', '.v3.jpg"')::jsonb, live_data = replace(live_data::text, '.jpg"', '.v3.jpg"')::jsonb
                 WHERE id = ${rows[0].id}`.execute(t.db);
      await sql`UPDATE live_images SET stage = 'push', state = 'waiting', image_data = replace(image_data::text, '.jpg"', '.v3.jpg"')::jsonb,
                       live_data = replace(live_data::text, '.jpg"', '.v2.jpg"')::jsonb WHERE id = ${rows[1].id}`.execute(t.db);
      const replaced = [...of(rows[0].image_hash), ...of(rows[0].image_hash).map((f) => version(f, 2))];
      const kept = [...of(rows[0].image_hash).map((f) => version(f, 3)), ...of(rows[1].image_hash).flatMap((f) => [version(f, 2), version(f, 3)])];
      // And the temp file of a v2 transfer killed long ago.
      const deadTemp = replaced[3].replace(/\/([^/]+)$/, '/.$1.Qw3rTy');
      for (const root of [daemon.moduleDir, local]) for (const f of [...replaced, ...kept, deadTemp]) plant(root, f);

      const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url });
      assert.equal((await run.exited).code, 0, run.output());
      for (const root of [daemon.moduleDir, local]) {
        for (const f of [...replaced, deadTemp]) assert.equal(fs.existsSync(path.join(root, f)), false, `${f} (replaced) deleted from ${root}`);
        for (const f of kept) assert.ok(fs.existsSync(path.join(root, f)), `${f} (served or on its way) kept in ${root}`);
      }
      assert.match(run.output(), /n1: deleted 7 orphans/);
    });

    it("removes the listing a killed run left in the temp folder (a country's whole file list), never a running one's", async () => {
      // A run killed mid-walk (SIGTERM from systemd, SIGKILL, the OOM killer) leaves its listing behind: on a
      // big frontend, hundreds of MB in /tmp for every killed run. What it leaves, under a pid now gone:
      const dead = spawn('true');
      await new Promise((resolve) => dead.once('close', resolve));
      const left = path.join(os.tmpdir(), `lis-list-${dead.pid}-Ab12Cd`);
      const running = path.join(os.tmpdir(), `lis-list-${process.pid}-Ef34Gh`);
      for (const dir of [left, running]) {
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, 'ab'), 'uk/ab/cd/abcd0000000000000000000000000000_small.jpg\n');
      }
      try {
        const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url });
        assert.equal((await run.exited).code, 0, run.output());
        assert.equal(fs.existsSync(left), false, "the dead run's listing is removed");
        assert.ok(fs.existsSync(running), "a running process's listing is kept");
        assert.deepEqual(
          fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith(`lis-list-${run.child.pid}-`)),
          [],
          'and this run left none of its own',
        );
      } finally {
        for (const dir of [left, running]) fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it("judges rsync temp files on the frontend's clock: a host two hours fast keeps a running transfer's, one two hours slow deletes a killed one's", async () => {
      // The frontends here stamp files with the real clock; lis_cron_frontend runs with its own two hours off it (and
      // in a zone with summer time: the listing's times and the frontend's clock are read alike, in UTC). Judged on
      // this host's clock, a fast host deleted the temp file a transfer was writing 10 s ago (two hours old by its
      // clock), and a slow one kept a killed transfer's leftover of 90 minutes ago (30 minutes in the future).
      const fresh = 'uk/ab/cd/.abcd2222222222222222222222222222_small.jpg.Zx9Yw8';
      const leftover = 'uk/ab/cd/.abcd3333333333333333333333333333_large.jpg.Qw3Er4';
      const fsCheck = async (offsetSeconds: number, ...flags: string[]) => {
        const env = { ...skewedClockEnv(offsetSeconds), TZ: 'America/New_York', LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url };
        const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk', ...flags], env);
        assert.equal((await run.exited).code, 0, run.output());
        return run.output();
      };
      const plantAged = (root: string, rel: string, ageSeconds: number) => {
        plant(root, rel);
        const at = new Date(Date.now() - ageSeconds * 1000);
        fs.utimesSync(path.join(root, rel), at, at);
      };
      for (const root of [daemon.moduleDir, local]) plantAged(root, fresh, 10);
      await fsCheck(2 * 3600);
      for (const root of [daemon.moduleDir, local]) assert.ok(fs.existsSync(path.join(root, fresh)), `a running transfer's temp file is kept in ${root}`);

      for (const root of [daemon.moduleDir, local]) plantAged(root, leftover, 90 * 60);
      // A dry run writes nothing to a frontend, the file that gives its clock included: it judges on this host's.
      for (const root of [daemon.moduleDir, local]) fs.rmSync(path.join(root, CLOCK_FILE));
      assert.match(await fsCheck(-2 * 3600, '--dry-run'), /n1: would delete 0 orphans/);
      for (const root of [daemon.moduleDir, local]) {
        assert.equal(fs.existsSync(path.join(root, CLOCK_FILE)), false, `a dry run wrote to ${root}`);
        assert.ok(fs.existsSync(path.join(root, leftover)), `a dry run deletes nothing in ${root}`);
      }
      const out = await fsCheck(-2 * 3600);
      assert.match(out, /n1: deleted 1 orphans/);
      assert.match(out, /n2: deleted 1 orphans/);
      for (const root of [daemon.moduleDir, local]) {
        assert.equal(fs.existsSync(path.join(root, leftover)), false, `a killed transfer's temp file of 90 minutes ago is gone from ${root}`);
        assert.ok(fs.existsSync(path.join(root, fresh)), `the running transfer's is still kept in ${root}`);
        assert.equal(fs.statSync(path.join(root, CLOCK_FILE)).size, 0, `the clock file is left, empty, in ${root}`);
      }
    });

    it('does not check a frontend whose clock file cannot be written: it says so, fails the run, and deletes nothing there', async () => {
      // A folder in the clock file's place: rsync cannot put a file over a folder with files, nor can a write.
      const orphan = 'uk/ab/cd/abcd0000000000000000000000000000_small.jpg';
      for (const root of [daemon.moduleDir, local]) {
        plant(root, orphan);
        plant(root, `${CLOCK_FILE}/keep`);
      }
      const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url });
      assert.equal((await run.exited).code, 1, run.output());
      assert.match(
        run.output(),
        /n1: cannot read the clock of rsync:\/\/127\.0\.0\.1:\d+\/thumbs\/ \(writing \.imagesys-clock: rsync exit \d+: .+\): its rsync temp files are judged on its clock; skipping it this run/,
      );
      assert.match(
        run.output(),
        /n2: cannot read the clock of \/.+\/n2\/ \(writing \.imagesys-clock: EISDIR.*\): its rsync temp files are judged on its clock; skipping it this run/,
      );
      for (const root of [daemon.moduleDir, local]) assert.ok(fs.existsSync(path.join(root, orphan)), `nothing deleted in ${root}, which was not checked`);
    });

    it("prunes originals (upkeep.pruneOriginals) by the database's clock: a host two days fast keeps the original of a row just made live", async () => {
      await insertPushRows(t.db, t.config, 'uk', 1, { stage: 'live' });
      const { image_hash } = await t.db.selectFrom('live_images').select('image_hash').executeTakeFirstOrThrow();
      const original = originalPath(t.config, 'uk', image_hash);
      fs.mkdirSync(path.dirname(original), { recursive: true });
      fs.writeFileSync(original, 'the original');
      const config = t.writeConfig({ upkeep: { pruneOriginals: 'after_live', keepOriginalsDays: 1 } });
      const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], {
        ...skewedClockEnv(2 * 86400),
        LIS_CONFIG: config,
        LIS_DATABASE_URL: t.url,
      });
      assert.equal((await run.exited).code, 0, run.output());
      assert.ok(fs.existsSync(original), `live for a moment on the database's clock, 2 days on this host's:\n${run.output()}`);
    });

    it('removes the hidden temp files of an rsync killed mid-transfer once they are old, never a fresh one nor anything not ours', async () => {
      // A real rsync into the local frontend, killed with SIGKILL (its whole process group, as systemd or
      // the OOM killer would) while it writes: it leaves `.<name>.XXXXXX`, and nothing under the real name.
      const name = 'uk/ab/cd/abcd1111111111111111111111111111_large.jpg';
      const store = path.join(t.dir, 'killstore');
      fs.mkdirSync(path.join(store, path.dirname(name)), { recursive: true });
      fs.writeFileSync(path.join(store, name), Buffer.alloc(20_000_000, 7));
      const rsync = spawn('rsync', ['--times', '--relative', '--bwlimit=200', `${store}/./${name}`, `${local}/`], { detached: true, stdio: 'ignore' });
      const closed = new Promise((resolve) => rsync.once('close', resolve));
      const folder = path.join(local, path.dirname(name));
      let temp: string | undefined;
      try {
        for (const deadline = Date.now() + 10_000; !temp;) {
          temp = fs.existsSync(folder) ? fs.readdirSync(folder).find((f) => f.startsWith('.abcd1111')) : undefined;
          if (!temp && Date.now() > deadline) throw new Error('rsync wrote no temp file within 10 s');
          if (!temp) await new Promise((resolve) => setTimeout(resolve, 20));
        }
      } finally {
        process.kill(-rsync.pid!, 'SIGKILL');
        await closed;
      }
      const killed = `${path.dirname(name)}/${temp}`;
      assert.ok(isRsyncTempName(killed, 'uk'), killed);
      assert.equal(fs.existsSync(path.join(local, name)), false, 'nothing under the real name');
      fs.utimesSync(path.join(local, killed), OLD, OLD);
      // The same leftover on the daemon; a fresh one (a transfer may be writing it) and a dot file not ours, both kept.
      plant(daemon.moduleDir, killed);
      const fresh = 'uk/ab/cd/.abcd2222222222222222222222222222_small.jpg.Zx9Yw8';
      const notOurs = 'uk/ab/cd/.notes.txt.AbCdEf';
      for (const root of [daemon.moduleDir, local]) {
        plant(root, notOurs);
        plant(root, fresh);
        fs.utimesSync(path.join(root, fresh), new Date(), new Date());
      }

      const run = spawnTs('bin/lis_cron_frontend', ['--fs_check', '--country', 'uk'], { LIS_CONFIG: t.writeConfig(), LIS_DATABASE_URL: t.url });
      assert.equal((await run.exited).code, 0, run.output());
      assert.match(run.output(), /n1: deleted 1 orphans/);
      assert.match(run.output(), /n2: deleted 1 orphans/);
      for (const root of [daemon.moduleDir, local]) {
        assert.equal(fs.existsSync(path.join(root, killed)), false, `the dead transfer's temp file is gone from ${root}`);
        assert.ok(fs.existsSync(path.join(root, fresh)), `a fresh temp file is kept in ${root}`);
        assert.ok(fs.existsSync(path.join(root, notOurs)), `a dot file not ours is kept in ${root}`);
      }
    });
  });
});
