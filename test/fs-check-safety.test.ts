import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isRsyncTempName } from '../src/cron/frontend-files.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { normaliseTarget } from '../src/push/frontend-target.ts';
import { isThumbnailName } from '../src/store/store-layout.ts';
import { spawnTs } from './helpers/processes.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

const OLD = new Date(Date.now() - 2 * 3600_000);
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
        assert.equal((await run.exited).code, 0, run.output());
        if (country === 'uk') {
          assert.match(run.output(), /n1: deleted 1 orphans/);
          assert.match(run.output(), /n2: deleted 1 orphans/);
        } else {
          assert.match(run.output(), /n1: deleted 0 orphans/);
          assert.match(run.output(), /n2: deleted 0 orphans/);
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
