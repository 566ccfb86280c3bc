import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DAEMON_ENV, nodeFlagsOf } from '../src/services/launch-settings.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { readLog } from './helpers/log-files.ts';

/** Pids of live processes whose command line mentions `text` (a test's config file: its daemons and supervisors). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text) && !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${entry}/stat`, 'utf8')))
        pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

describe('servicectl', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  const ctl = async (args: string[]) => {
    const run = spawnTs('bin/servicectl', args);
    const { code } = await run.exited;
    return { code, text: run.output() };
  };

  it('starts a real daemon detached, reports it, and stops it with SIGTERM', async function () {
    this.timeout(60_000);
    const config = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') } });
    assert.deepEqual(await ctl(['status', 'imagesys-managerd', '--config', config]), { code: 3, text: 'imagesys-managerd is stopped\n' });
    const started = await ctl(['start', 'imagesys-managerd', '--config', config]);
    assert.equal(started.code, 0, started.text);
    const pid = Number(/started \(pid (\d+)\)/.exec(started.text)?.[1]);
    assert.ok(pid > 0, started.text);
    const status = await ctl(['status', 'imagesys-managerd', '--config', config]);
    assert.equal(status.code, 0);
    assert.match(status.text, new RegExp(`imagesys-managerd is running \\(pid ${pid}, since `));
    // It is a real service: registered in the workers table, logging to its files.
    await waitFor(
      async () => (await t.db.selectFrom('workers').select('id').where('component', '=', 'managerd').execute()).length === 1,
      20_000,
      'the manager to register',
    );
    assert.match((await ctl(['start', 'managerd', '--config', config])).text, /already running/);
    const stopped = await ctl(['stop', 'imagesys-managerd', '--config', config]);
    assert.equal(stopped.code, 0);
    assert.equal(stopped.text, `Waiting for ${pid} to die...dead.\n`);
    assert.equal((await ctl(['status', 'imagesys-managerd', '--config', config])).code, 3);
    const log = readLog(path.join(t.config.log.dir, 'managerd.log'));
    assert.match(log, /Scheduled stuck_jobs/);
    assert.match(log, /SIGTERM received: stopping/);
    // Its output file, as its log files: nothing for other users of the machine (a line may name a signed URL).
    assert.equal(fs.statSync(path.join(t.config.log.dir, 'managerd.out')).mode & 0o027, 0);
    const worker = await t.db.selectFrom('workers').select('stopped_at').where('component', '=', 'managerd').executeTakeFirstOrThrow();
    assert.ok(worker.stopped_at, 'it stopped cleanly');
  });

  it('tells a stale pid file from a running service, and refuses unknown services and actions', async () => {
    const runDir = path.join(t.dir, 'run');
    const config = t.writeConfig({ services: { runDir } });
    fs.mkdirSync(runDir, { recursive: true });
    fs.writeFileSync(path.join(runDir, 'imagesys-managerd.pid'), '999999\n');
    const stale = await ctl(['status', 'imagesys-managerd', '--config', config]);
    assert.equal(stale.code, 1);
    assert.match(stale.text, /not running, but its pid file names 999999 \(stale/);
    assert.match((await ctl(['stop', 'imagesys-managerd', '--config', config])).text, /removed stale pid file/);
    const unknown = await ctl(['start', 'imagesys-nonsense', '--config', config]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.text, /unknown service "imagesys-nonsense"/);
    const noCountry = await ctl(['start', 'imagesys-downloadd', '--config', config]);
    assert.equal(noCountry.code, 2);
    assert.match(noCountry.text, /runs per country and the config lists no countries: give --country/);
    const badAction = await ctl(['reload', 'imagesys-managerd', '--config', config]);
    assert.equal(badAction.code, 2);
    assert.match(badAction.text, /unknown action "reload": expected start, stop, restart, status/);
    // Named as a bad action even where the service alone would be refused (per country, no countries configured).
    const badActionPerCountry = await ctl(['strat', 'imagesys-downloadd', '--config', config]);
    assert.deepEqual(badActionPerCountry, { code: 2, text: 'error: unknown action "strat": expected start, stop, restart, status\n' });
    // lis_imaged has no --country: refused here, rather than started to exit at once with a usage error.
    const imagedCountry = await ctl(['start', 'imagesys-imaged', '--country', 'uk', '--config', config]);
    assert.deepEqual(imagedCountry, {
      code: 2,
      text: 'error: imagesys-imaged runs once per host for every country: --country does not apply (lis_imaged has no such flag)\n',
    });
    assert.equal(fs.existsSync(path.join(runDir, 'imagesys-imaged.uk.pid')), false);
  });

  it('reports a daemon that cannot start, with its last words', async function () {
    this.timeout(30_000);
    // servicectl's own checks pass; the pusher finds no rsync at the configured path and exits at once.
    const config = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') }, push: { rsyncPath: '/nonexistent/rsync' } });
    const run = await ctl(['start', 'imagesys-pusherd', '--country', 'uk', '--config', config]);
    assert.equal(run.code, 1, run.text);
    assert.match(run.text, /Starting imagesys-pusherd \(uk\)\.\.\.failed\./);
    assert.match(run.text, /rsync not found: install it \(apt-get install rsync\)/);
    assert.equal(fs.existsSync(path.join(t.dir, 'run', 'imagesys-pusherd.uk.pid')), false, 'no pid file left behind');
    assert.deepEqual(processesMentioning(config), [], 'neither the daemon nor its supervisor left running');
    assert.match(fs.readFileSync(path.join(t.config.log.dir, 'pusherd.uk.out'), 'utf8'), /exited 1 before it was ready: not restarting it/);
    // Later, at 3 a.m., status says that it failed, not merely "stopped" (the same exit code: it is not running).
    const status = await ctl(['status', 'imagesys-pusherd', '--country', 'uk', '--config', config]);
    assert.equal(status.code, 3);
    assert.match(
      status.text,
      /^imagesys-pusherd \(uk\) is stopped: it failed to start \(\d{4}-\d\d-\d\dT[\d:]+Z: \(pid \d+\) exited 1 before it was ready\); see .*pusherd\.uk\.out\n$/,
    );
    // A stop clears it: stopped by the operator now.
    assert.equal((await ctl(['stop', 'imagesys-pusherd', '--country', 'uk', '--config', config])).text, 'imagesys-pusherd (uk) is not running\n');
    assert.deepEqual(await ctl(['status', 'imagesys-pusherd', '--country', 'uk', '--config', config]), { code: 3, text: 'imagesys-pusherd (uk) is stopped\n' });
  });

  it('reports a daemon whose configured server refuses its login or database as failed at once, not "not ready after 120s"', async function () {
    this.timeout(30_000);
    const wrong = (change: (url: URL) => void) => {
      const url = new URL(t.url);
      change(url);
      return url.toString();
    };
    const cases = [
      { name: 'password', url: wrong((u) => (u.password = 'wrong')), said: /password authentication failed for user .*\(wrong password\)/ },
      { name: 'database', url: wrong((u) => (u.pathname = '/no_such_database')), said: /database "no_such_database" does not exist/ },
    ];
    // Both at once, each with its own run folder: the test stays within its couple of seconds.
    await Promise.all(
      cases.map(async ({ name, url, said }) => {
        const config = t.writeConfig({ database: { url }, services: { runDir: path.join(t.dir, `run-${name}`) } });
        const started = Date.now();
        const run = await ctl(['start', 'imagesys-thumbnaild', '--country', 'uk', '--config', config]);
        assert.equal(run.code, 1, run.text);
        assert.match(run.text, /Starting imagesys-thumbnaild \(uk\)\.\.\.failed\./);
        assert.match(run.text, said);
        assert.ok(Date.now() - started < 15_000, `${name}: took ${Date.now() - started} ms: the refusal was waited out`);
        assert.deepEqual(processesMentioning(config), [], `${name}: neither the daemon nor its supervisor left running`);
      }),
    );
  });

  it('without --country acts on every configured country: starts, reports and stops each', async function () {
    this.timeout(120_000);
    const config = t.writeConfig({ countries: ['uk', 'de'], services: { runDir: path.join(t.dir, 'run') } });
    try {
      const started = await ctl(['start', 'imagesys-thumbnaild', '--config', config]);
      assert.equal(started.code, 0, started.text);
      const pids = [...started.text.matchAll(/Starting imagesys-thumbnaild \((uk|de)\)\.\.\.started \(pid (\d+)\)\./g)].map(
        (m) => [m[1], Number(m[2])] as const,
      );
      assert.deepEqual(
        pids.map(([c]) => c),
        ['uk', 'de'],
        started.text,
      );
      // Ready means registered: each instance is in the workers table for its country by now.
      const workers = await t.db.selectFrom('workers').select(['pid', 'country']).where('component', '=', 'thumbnaild').orderBy('country').execute();
      assert.deepEqual(
        workers.map((w) => [w.country, w.pid]),
        [...pids].sort((a, b) => a[0].localeCompare(b[0])),
      );
      // Started with the daemon's launch settings (src/services/launch-settings.ts).
      for (const [, pid] of pids) {
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        assert.deepEqual(argv.slice(1, 1 + nodeFlagsOf('lis_thumbnaild').length), [...nodeFlagsOf('lis_thumbnaild')], argv.join(' '));
        const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
        for (const [k, v] of Object.entries(DAEMON_ENV)) assert.ok(environ.includes(`${k}=${v}`), `${k}=${v}`);
      }
      const status = await ctl(['status', 'thumbnaild', '--config', config]);
      assert.equal(status.code, 0, status.text);
      for (const [country, pid] of pids) assert.match(status.text, new RegExp(`imagesys-thumbnaild \\(${country}\\) is running \\(pid ${pid}, since `));
      const stopped = await ctl(['stop', 'imagesys-thumbnaild', '--config', config]);
      assert.equal(stopped.text, pids.map(([, pid]) => `Waiting for ${pid} to die...dead.\n`).join(''));
      assert.equal((await ctl(['status', 'imagesys-thumbnaild', '--config', config])).code, 3);
    } finally {
      await ctl(['stop', 'imagesys-thumbnaild', '--config', config]);
    }
  });

  it('starts a daemon killed with SIGKILL again, by its supervisor', async function () {
    this.timeout(120_000);
    const config = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') } });
    try {
      const started = await ctl(['start', 'imagesys-managerd', '--config', config]);
      assert.equal(started.code, 0, started.text);
      const first = Number(/started \(pid (\d+)\)/.exec(started.text)![1]);
      process.kill(first, 'SIGKILL');
      let again = 0;
      await waitFor(
        async () => {
          const status = await ctl(['status', 'imagesys-managerd', '--config', config]);
          again = Number(/is running \(pid (\d+)/.exec(status.text)?.[1] ?? 0);
          return status.code === 0 && again !== first;
        },
        30_000,
        'the manager to run again',
      );
      assert.ok(again > 0);
      assert.match(
        fs.readFileSync(path.join(t.config.log.dir, 'managerd.out'), 'utf8'),
        new RegExp(`imagesys-managerd \\(pid ${first}\\) was killed \\(signal 9\\); starting it again in 1s`),
      );
      const stopped = await ctl(['stop', 'imagesys-managerd', '--config', config]);
      assert.equal(stopped.text, `Waiting for ${again} to die...dead.\n`);
      assert.deepEqual(processesMentioning(config), []);
    } finally {
      await ctl(['stop', 'imagesys-managerd', '--config', config]);
    }
  });

  it('still sees a daemon whose supervisor was killed: status says so, start adds no second, stop stops it', async function () {
    this.timeout(60_000);
    const runDir = path.join(t.dir, 'run');
    const config = t.writeConfig({ services: { runDir } });
    try {
      const started = await ctl(['start', 'imagesys-managerd', '--config', config]);
      assert.equal(started.code, 0, started.text);
      const daemon = Number(/started \(pid (\d+)\)/.exec(started.text)![1]);
      const supervisor = Number.parseInt(fs.readFileSync(path.join(runDir, 'imagesys-managerd.pid'), 'utf8'), 10);
      // An operator's kill -9, or the OOM killer, takes the supervisor and leaves the daemon working.
      process.kill(supervisor, 'SIGKILL');
      await waitFor(() => !processesMentioning(config).includes(supervisor), 10_000, 'the supervisor to die');
      assert.deepEqual(processesMentioning(config), [daemon]);
      const status = await ctl(['status', 'imagesys-managerd', '--config', config]);
      assert.deepEqual(status, {
        code: 4,
        text:
          `imagesys-managerd is running (pid ${daemon}) without a supervisor (its supervisor (pid ${supervisor}) died): ` +
          'nothing starts it again if it dies; `servicectl restart imagesys-managerd` supervises it again\n',
      });
      const again = await ctl(['start', 'imagesys-managerd', '--config', config]);
      assert.equal(again.code, 0, again.text);
      assert.match(again.text, new RegExp(`already running \\(pid ${daemon}\\), without its supervisor`));
      assert.deepEqual(processesMentioning(config), [daemon], 'no second manager beside it');
      const stopped = await ctl(['stop', 'imagesys-managerd', '--config', config]);
      assert.deepEqual(stopped, { code: 0, text: `Waiting for ${daemon} to die...dead.\n` });
      assert.deepEqual(processesMentioning(config), []);
      assert.equal((await ctl(['status', 'imagesys-managerd', '--config', config])).code, 3);
      const worker = await t.db.selectFrom('workers').select('stopped_at').where('component', '=', 'managerd').executeTakeFirstOrThrow();
      assert.ok(worker.stopped_at, 'it stopped cleanly (SIGTERM), not killed');
    } finally {
      for (const pid of processesMentioning(config)) process.kill(pid, 'SIGKILL');
    }
  });

  it('lets only one of several starts at once start the service: one supervisor, one daemon, and stop leaves none', async function () {
    this.timeout(90_000);
    const config = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') } });
    try {
      // A deploy script and an operator, or a loop run twice: each start found the service stopped.
      const starts = await Promise.all([1, 2, 3, 4].map(() => ctl(['start', 'imagesys-managerd', '--config', config])));
      for (const run of starts) assert.equal(run.code, 0, run.text);
      assert.equal(starts.filter((run) => /started \(pid \d+\)/.test(run.text)).length, 1, starts.map((run) => run.text).join(''));
      const daemon = Number(/started \(pid (\d+)\)/.exec(starts.map((run) => run.text).join(''))![1]);
      for (const run of starts) if (!run.text.includes('started')) assert.equal(run.text, `imagesys-managerd is already running (pid ${daemon})\n`);
      assert.equal(processesMentioning(config).length, 2, 'one supervisor and its daemon');
      const stopped = await ctl(['stop', 'imagesys-managerd', '--config', config]);
      assert.deepEqual(stopped, { code: 0, text: `Waiting for ${daemon} to die...dead.\n` });
      assert.deepEqual(processesMentioning(config), []);
    } finally {
      for (const pid of processesMentioning(config)) process.kill(pid, 'SIGKILL');
    }
  });

  it('names a run or log folder it cannot use, with its config key, not a stack trace', async function () {
    this.timeout(30_000);
    const file = path.join(t.dir, 'a-file');
    fs.writeFileSync(file, '');
    // A file where the folder should be (as root, the one way a test can make a folder unusable). A stop finds
    // nothing there to stop (no pid file can be in it), and says so.
    assert.deepEqual(await ctl(['stop', 'imagesys-managerd', '--config', t.writeConfig({ services: { runDir: path.join(t.dir, 'a-file', 'run') } })]), {
      code: 0,
      text: 'imagesys-managerd is not running\n',
    });
    const badRun = t.writeConfig({ services: { runDir: path.join(file, 'run') } });
    const badLog = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') }, log: { dir: path.join(file, 'log') } });
    for (const action of ['start', 'restart']) {
      const run = await ctl([action, 'imagesys-managerd', '--config', badRun]);
      assert.deepEqual(run, {
        code: 1,
        text: `error: cannot use services.runDir ${path.join(file, 'run')} for imagesys-managerd: ENOTDIR: not a directory, mkdir '${path.join(file, 'run')}'\n`,
      });
    }
    const run = await ctl(['start', 'imagesys-managerd', '--config', badLog]);
    assert.equal(run.code, 1, run.text);
    assert.match(run.text, /^error: cannot use log\.dir .*\/a-file\/log for imagesys-managerd: ENOTDIR/);
    assert.doesNotMatch(run.text, /\n\s+at /);
    assert.deepEqual(processesMentioning(badLog), []);
  });

  it('stops at once a start still waiting for its daemon (the database away), which then reports it failed', async function () {
    this.timeout(60_000);
    const config = t.writeConfig({ services: { runDir: path.join(t.dir, 'run') }, database: { url: 'postgres://imagesys:x@127.0.0.1:1/nowhere' } });
    try {
      const start = spawnTs('bin/servicectl', ['start', 'imagesys-managerd', '--config', config]);
      // The daemon waits out the database as a service does: the start waits for its ready signal meanwhile.
      // servicectl itself, the supervisor and the daemon.
      await waitFor(() => start.output().includes('Starting imagesys-managerd...') && processesMentioning(config).length === 3, 20_000, 'the start to wait');
      const began = Date.now();
      const stopped = await ctl(['stop', 'imagesys-managerd', '--config', config]);
      assert.equal(stopped.code, 0, stopped.text);
      assert.ok(Date.now() - began < 15_000, `the stop took ${Date.now() - began} ms`);
      assert.equal((await start.exited).code, 1);
      assert.match(start.output(), /Starting imagesys-managerd\.\.\.failed\./);
      assert.deepEqual(processesMentioning(config), []);
    } finally {
      for (const pid of processesMentioning(config)) process.kill(pid, 'SIGKILL');
    }
  });
});
