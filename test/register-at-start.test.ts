// A service whose database goes away between its connect and its registration (a restart, a failover) waits for it,
// as it waits for it before the connect: before, it exited 1. A chaos run in CI saw lis_downloadd do so when its
// PostgreSQL restarted just as a killed daemon came back.
import assert from 'node:assert/strict';
import path from 'node:path';
import { sql } from 'kysely';
import { freePort } from './helpers/free-port.ts';
import { readLogIfAny } from './helpers/log-files.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';

describe('services: a database that goes away as they register', function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const cleanups = databasePerTest((made) => (t = made));

  /**
   * The next `times` registrations fail as a server shutting down answers (SQLSTATE 57P01, "terminating connection
   * due to administrator command"); a sequence counts them, since it keeps counting when the statement fails.
   */
  const refuseRegistrations = async (times: number) => {
    await sql`CREATE SEQUENCE refused_registrations`.execute(t.db);
    await sql
      .raw(
        `CREATE FUNCTION refuse_registration() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('refused_registrations') <= ${times} THEN
             RAISE EXCEPTION 'terminating connection due to administrator command (fixture)' USING ERRCODE = '57P01';
           END IF;
           RETURN NEW;
         END $$`,
      )
      .execute(t.db);
    await sql`CREATE TRIGGER refuse_registration BEFORE INSERT ON workers FOR EACH ROW EXECUTE FUNCTION refuse_registration()`.execute(t.db);
  };
  const refusals = async () => Number((await sql<{ n: string }>`SELECT last_value AS n FROM refused_registrations`.execute(t.db)).rows[0].n);
  const registered = async (component: string) =>
    (await t.db.selectFrom('workers').select('id').where('component', '=', component).where('stopped_at', 'is', null).execute()).length === 1;
  const spawned = (run: Spawned) => {
    cleanups.push(() => void (run.child.exitCode === null && run.child.signalCode === null && run.child.kill('SIGKILL')));
    return run;
  };
  /** The service waited out both refusals, registered, and stops cleanly when told. */
  const waitsThenRuns = async (run: Spawned, component: string, logFile: string) => {
    await waitFor(async () => (await registered(component)) || run.child.exitCode !== null, 60_000, `${component} registered`);
    assert.equal(run.child.exitCode, null, `${component} is still running:\n${run.output()}\n${readLogIfAny(logFile)}`);
    assert.equal(await refusals(), 3, 'two refused registrations, then the one that went through');
    const warnings = () =>
      (readLogIfAny(logFile).match(/Cannot register the worker, the database is away \(terminating connection .*\); trying again in \d+s/g) ?? []).length;
    // winston writes the file after the call returns: the count is waited for, then must be exactly two.
    await waitFor(() => warnings() >= 2, 10_000, 'the two refusals logged').catch(() => {});
    assert.equal(warnings(), 2, readLogIfAny(logFile));
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
  };

  it('lis_downloadd as a service waits and registers; by hand it exits with the error', async () => {
    await refuseRegistrations(2);
    const config = t.writeConfig();
    const service = spawned(spawnTs('bin/lis_downloadd', ['--service', '--country', 'uk', '--config', config, '--metrics-port', '0']));
    await waitsThenRuns(service, 'downloadd', path.join(t.config.log.dir, 'downloadd.uk.log'));

    // By hand the operator is there: the error now, not a wait.
    await sql`ALTER SEQUENCE refused_registrations RESTART`.execute(t.db);
    const byHand = spawned(spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', config]));
    const { code } = await byHand.exited;
    assert.equal(code, 1, byHand.output());
    assert.match(byHand.output(), /terminating connection due to administrator command \(fixture\)/);
  });

  it('lis_managerd as a service waits and registers', async () => {
    await refuseRegistrations(2);
    const schedule = { stuck_jobs: null, bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };
    const config = t.writeConfig({ manager: { ...t.config.manager, schedule } });
    const run = spawned(spawnTs('bin/lis_managerd', ['--service', '--country', 'uk', '--config', config, '--metrics-port', '0']));
    await waitsThenRuns(run, 'managerd', path.join(t.config.log.dir, 'managerd.uk.log'));
  });

  it('lis_imaged as a service waits and registers', async () => {
    await refuseRegistrations(2);
    const run = spawned(spawnTs('bin/lis_imaged', ['--service', '--config', t.writeConfig(), '--port', String(await freePort())]));
    await waitsThenRuns(run, 'imaged', path.join(t.config.log.dir, 'imaged.log'));
  });

  it('a stop while they wait to register ends them at once, cleanly (exit 0, saying so), registered nowhere', async () => {
    await refuseRegistrations(1_000_000);
    const schedule = { stuck_jobs: null, bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };
    const config = t.writeConfig({ manager: { ...t.config.manager, schedule } });
    const services = [
      { component: 'downloadd', log: 'downloadd.uk.log', bin: 'bin/lis_downloadd', args: ['--country', 'uk', '--metrics-port', '0'] },
      { component: 'managerd', log: 'managerd.uk.log', bin: 'bin/lis_managerd', args: ['--country', 'uk', '--metrics-port', '0'] },
      { component: 'imaged', log: 'imaged.log', bin: 'bin/lis_imaged', args: ['--port', String(await freePort())] },
    ];
    for (const service of services) {
      const run = spawned(spawnTs(service.bin, ['--service', '--config', config, ...service.args]));
      const logFile = path.join(t.config.log.dir, service.log);
      await waitFor(
        () => /Cannot register the worker, the database is away/.test(readLogIfAny(logFile)) || run.child.exitCode !== null,
        60_000,
        `${service.component} waiting`,
      );
      const asked = Date.now();
      run.child.kill('SIGTERM');
      const { code } = await run.exited;
      const log = readLogIfAny(logFile);
      assert.equal(code, 0, `${service.component}:\n${run.output()}\n${log}`);
      assert.ok(Date.now() - asked < 5000, `${service.component} took ${Date.now() - asked} ms to stop`);
      assert.match(log, /Stopped while waiting for the database: terminating connection due to administrator command \(fixture\)/);
      assert.doesNotMatch(log, /ERROR/, `${service.component}: a stop is no error`);
      assert.equal(await registered(service.component), false);
    }
  });

  it('a stop that comes while they register is not lost: each exits once registered, cleanly, and marks itself stopped', async () => {
    // A slow registration holds each service there while the stop comes: a stop before the point where a service
    // starts listening for it has fired already and never fires again (lis_managerd waited for it for ever).
    await sql`CREATE FUNCTION slow_registration() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$`.execute(t.db);
    await sql`CREATE TRIGGER slow_registration BEFORE INSERT ON workers FOR EACH ROW EXECUTE FUNCTION slow_registration()`.execute(t.db);
    const registering = async () =>
      (
        await sql<{
          n: number;
        }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query ILIKE '%insert into "workers"%'`.execute(t.db)
      ).rows[0].n > 0;
    const schedule = { stuck_jobs: null, bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };
    const config = t.writeConfig({ manager: { ...t.config.manager, schedule } });
    const services = [
      { component: 'downloadd', bin: 'bin/lis_downloadd', args: ['--country', 'uk', '--metrics-port', '0'] },
      { component: 'managerd', bin: 'bin/lis_managerd', args: ['--country', 'uk', '--metrics-port', '0'] },
      { component: 'imaged', bin: 'bin/lis_imaged', args: ['--port', String(await freePort())] },
    ];
    for (const service of services) {
      const run = spawned(spawnTs(service.bin, ['--service', '--config', config, ...service.args]));
      await waitFor(async () => (await registering()) || run.child.exitCode !== null, 60_000, `${service.component} registering`);
      run.child.kill('SIGTERM');
      const exited = await Promise.race([run.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000))]);
      assert.ok(exited, `${service.component} still running 20 s after a SIGTERM that came while it registered:\n${run.output()}`);
      assert.equal(exited.code, 0, `${service.component}:\n${run.output()}`);
      const rows = await t.db.selectFrom('workers').select(['stopped_at']).where('component', '=', service.component).execute();
      assert.equal(rows.length, 1);
      assert.ok(rows[0].stopped_at, `${service.component} marked itself stopped`);
    }
  });
});
