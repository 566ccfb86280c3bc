// The services that are not queue runners (lis_imaged, lis_managerd) beat like the daemons, and come back
// to life in the registry when the manager marked them stopped while they lived (a database outage longer
// than manager.staleWorkerSeconds does it): before, they stayed marked stopped for the rest of their run.
import assert from 'node:assert/strict';
import path from 'node:path';
import { sql } from 'kysely';
import { startImaged } from './helpers/imaged-fixtures.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';
import { readLogIfAny } from './helpers/log-files.ts';

describe('services: heartbeat', function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const cleanups = databasePerTest((made) => (t = made));

  const stoppedAt = async (component: string) =>
    (await t.db.selectFrom('workers').select(['stopped_at', 'heartbeat_at']).where('component', '=', component).executeTakeFirstOrThrow()).stopped_at;

  /** What lis_managerd's stuck_jobs check does to a silent worker: marked stopped, holding nothing. */
  const markedStoppedByTheManager = (component: string) =>
    sql`UPDATE workers SET stopped_at = now(), holding = 0 WHERE component = ${component} AND stopped_at IS NULL`.execute(t.db);

  it('lis_imaged marked stopped by the manager while it runs says so and registers again', async () => {
    const imaged = await startImaged(t.writeConfig({ queue: { ...t.config.queue, heartbeatSeconds: 0.2 } }));
    cleanups.push(imaged.stop);
    await waitFor(async () => (await stoppedAt('imaged')) === null, 10_000, 'lis_imaged registered');
    await markedStoppedByTheManager('imaged');
    await waitFor(
      () => /ERROR .*The manager marked this worker stopped \(no heartbeat for too long\): registering again/.test(imaged.run.output()),
      10_000,
      'lis_imaged learns it',
    );
    await waitFor(async () => (await stoppedAt('imaged')) === null, 10_000, 'lis_imaged registered again');
    await imaged.stop();
    assert.ok(await stoppedAt('imaged'), 'its own stop marks it stopped, and no late beat revives it');
  });

  it('lis_managerd marked stopped by another manager while it runs registers again', async () => {
    const schedule = { stuck_jobs: null, bad_retry_jobs: null, bad_datasources: null, unlisted_rows: null, missed_origin_rows: null, alerts: null };
    const config = t.writeConfig({ manager: { ...t.config.manager, schedule }, queue: { ...t.config.queue, heartbeatSeconds: 0.2 } });
    const run = spawnTs('bin/lis_managerd', ['--service', '--country', 'uk', '--config', config, '--metrics-port', '0']);
    cleanups.push(() => void (run.child.exitCode === null && run.child.kill('SIGKILL')));
    const logFile = path.join(t.config.log.dir, 'managerd.uk.log');
    const log = () => readLogIfAny(logFile);
    await waitFor(
      async () => (await t.db.selectFrom('workers').select('id').where('component', '=', 'managerd').where('stopped_at', 'is', null).execute()).length === 1,
      30_000,
      'the manager registered',
    );
    await markedStoppedByTheManager('managerd');
    await waitFor(
      () => /The manager marked this worker stopped \(no heartbeat for too long\): registering again/.test(log()),
      10_000,
      'lis_managerd learns it',
    );
    await waitFor(async () => (await stoppedAt('managerd')) === null, 10_000, 'lis_managerd registered again');
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0, run.output());
    assert.ok(await stoppedAt('managerd'), 'its own stop marks it stopped');
  });
});
