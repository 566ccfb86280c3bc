// lis_imaged's bounds on a database that hangs are its config's (database.queryTimeoutSeconds), on its lock
// pool as on its main pool: a generation whose lock query goes unanswered ends at the bound, with a 503.
import assert from 'node:assert/strict';
import pg from 'pg';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg, startImaged } from './helpers/imaged-fixtures.ts';
import { insertQueuedRow, rawGet } from './helpers/imaged-in-process.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** src/imaged/image-row.ts's advisory lock namespace ("imgd"), under which a generation locks its image. */
const IMAGED_LOCK_NAMESPACE = 0x696d6764;

describe("lis_imaged's database bounds", function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const closers: Array<() => Promise<unknown>> = [];
  beforeEach(async () => (t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } })));
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
    await t.drop();
  });

  it('a generation whose lock query the server leaves unanswered (the lock pool) fails at the configured 1.5 s with a 503, not at imaged.timeoutSeconds', async () => {
    const origin = await OriginServer.start(new Map([['/photo.jpg', await photoJpeg(300, 200)]]));
    closers.push(() => origin.close());
    const config = t.writeConfig({
      database: { ...t.config.database, connectTimeoutSeconds: 1, queryTimeoutSeconds: 1.5 },
      imaged: { ...t.config.imaged, timeoutSeconds: 60 },
    });
    const imaged = await startImaged(config, { LIS_DATABASE_URL: t.url });
    closers.push(imaged.stop);
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    // A session holding the image's lock as a frozen generation would: the lock pool's wait for it is the query left unanswered.
    const holder = new pg.Client({ connectionString: t.url });
    await holder.connect();
    closers.push(() => holder.end());
    await holder.query('SELECT pg_advisory_lock($1::int, hashtext($2))', [IMAGED_LOCK_NAMESPACE, `uk/${row.hash}`]);
    const answer = await rawGet(imaged.url, row.pathOf('small'));
    assert.equal(answer.status, 503, answer.body.toString());
    assert.match(imaged.run.output(), /is not answering: no reply to a query in 1\.5 s/, imaged.run.output());
  });
});
