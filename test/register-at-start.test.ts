// A service whose database goes away between its connect and its registration (a restart, a failover) waits for it,
// as it waits for it before the connect: before, it exited 1. A chaos run in CI saw lis_downloadd do so when its
// PostgreSQL restarted just as a killed daemon came back.
import assert from 'node:assert/strict';
import path from 'node:path';
import { sql } from 'kysely';
import { readLogIfAny } from './helpers/log-files.ts';
import { spawnTs, waitFor, type Spawned } from './helpers/processes.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';

/** Every manager check off: the manager only registers and beats. */
const NO_CHECKS = { stuck_jobs: null, bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };

/** The services that register in `workers`, as a supervisor starts them, and the log each writes. */
const SERVICES = [
  { component: 'downloadd', log: 'downloadd.uk.log', bin: 'bin/lis_downloadd', args: ['--country', 'uk', '--metrics-port', '0'] },
  { component: 'managerd', log: 'managerd.uk.log', bin: 'bin/lis_managerd', args: ['--country', 'uk', '--metrics-port', '0'] },
  { component: 'imaged', log: 'imaged.log', bin: 'bin/lis_imaged', args: ['--port', '0'] },
];
type Service = (typeof SERVICES)[number];

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
  const logFile = (service: Service) => path.join(t.config.log.dir, service.log);
  /** The service started as a supervisor would (--service), killed after the test if it is still running. */
  const startService = (service: Service): Spawned => {
    const config = t.writeConfig({ manager: { ...t.config.manager, schedule: NO_CHECKS } });
    const run = spawnTs(service.bin, ['--service', '--config', config, ...service.args]);
    cleanups.push(() => void (run.child.exitCode === null && run.child.signalCode === null && run.child.kill('SIGKILL')));
    return run;
  };

  for (const service of SERVICES)
    it(`lis_${service.component} as a service waits and registers`, async () => {
      await refuseRegistrations(2);
      const run = startService(service);
      const log = logFile(service);
      await waitFor(async () => (await registered(service.component)) || run.child.exitCode !== null, 60_000, `${service.component} registered`);
      assert.equal(run.child.exitCode, null, `${service.component} is still running:\n${run.output()}\n${readLogIfAny(log)}`);
      assert.equal(await refusals(), 3, 'two refused registrations, then the one that went through');
      const warnings = () =>
        (readLogIfAny(log).match(/Cannot register the worker, the database is away \(terminating connection .*\); trying again in \d+s/g) ?? []).length;
      // winston writes the file after the call returns: the count is waited for, then must be exactly two.
      await waitFor(() => warnings() >= 2, 10_000, 'the two refusals logged').catch(() => {});
      assert.equal(warnings(), 2, readLogIfAny(log));
      run.child.kill('SIGTERM');
      assert.equal((await run.exited).code, 0, run.output());
    });

  it("by hand, a refused registration is the operator's error at once: exit 1, no wait", async () => {
    await refuseRegistrations(1);
    const byHand = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig()]);
    cleanups.push(() => void (byHand.child.exitCode === null && byHand.child.kill('SIGKILL')));
    const { code } = await within(byHand.exited, 'exit', 60_000);
    assert.equal(code, 1, byHand.output());
    assert.match(byHand.output(), /terminating connection due to administrator command \(fixture\)/);
  });

  it('a stop while they wait to register ends them at once, cleanly (exit 0, saying so), registered nowhere', async () => {
    await refuseRegistrations(1_000_000);
    for (const service of SERVICES) {
      const run = startService(service);
      const log = logFile(service);
      await waitFor(
        () => /Cannot register the worker, the database is away/.test(readLogIfAny(log)) || run.child.exitCode !== null,
        60_000,
        `${service.component} waiting`,
      );
      const asked = Date.now();
      run.child.kill('SIGTERM');
      const { code } = await run.exited;
      const logged = readLogIfAny(log);
      assert.equal(code, 0, `${service.component}:\n${run.output()}\n${logged}`);
      assert.ok(Date.now() - asked < 5000, `${service.component} took ${Date.now() - asked} ms to stop`);
      assert.match(logged, /Stopped while waiting for the database: terminating connection due to administrator command \(fixture\)/);
      assert.doesNotMatch(logged, /ERROR/, `${service.component}: a stop is no error`);
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
    for (const service of SERVICES) {
      const run = startService(service);
      await waitFor(async () => (await registering()) || run.child.exitCode !== null, 60_000, `${service.component} registering`);
      run.child.kill('SIGTERM');
      const { code } = await within(run.exited, `exit of ${service.component} after a SIGTERM that came while it registered`, 20_000);
      assert.equal(code, 0, `${service.component}:\n${run.output()}`);
      const rows = await t.db.selectFrom('workers').select(['stopped_at']).where('component', '=', service.component).execute();
      assert.equal(rows.length, 1);
      assert.ok(rows[0].stopped_at, `${service.component} marked itself stopped`);
    }
  });
});
