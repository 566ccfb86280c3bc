// lis_imaged's bounds on a database that hangs are its config's (database.queryTimeoutSeconds), on its lock
// pool as on its main pool: a generation whose lock query goes unanswered ends at the bound, with a 503.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg, startImaged } from './helpers/imaged-fixtures.ts';
import { insertQueuedRow, rawGet } from './helpers/imaged-in-process.ts';
import { waitFor } from './helpers/processes.ts';
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
    // Logged before the answer, but read from the child's stderr pipe apart from the answer's socket: waited for.
    await waitFor(() => /is not answering: no reply to a query in 1\.5 s/.test(imaged.run.output()), 20_000, 'the query bound said').catch((error: Error) => {
      throw new Error(`${error.message}; lis_imaged:\n${imaged.run.output()}`);
    });
  });

  it('a claim of a queued row whose answer is lost (the server committed it, then the path hung) does not leave the row locked by the live process: given back once the path is back, the next request makes it', async () => {
    const origin = await OriginServer.start(new Map([['/photo.jpg', await photoJpeg(300, 200)]]));
    closers.push(() => origin.close());
    const relay = await startDatabaseProxy(t.url);
    closers.push(async () => relay.cut());
    // A generation may leave its lock's transaction idle for 1 + 1 + 2 + 10 s (generationIdleBoundMs: the download's
    // total bound, the thumbnail's, the request's, and 10 s for the rest), which the test waits out below: each as
    // short as a 300x200 photo from a local origin allows; the request's still over the query bound (1.5 s).
    const config = t.writeConfig({
      database: { ...t.config.database, connectTimeoutSeconds: 1, queryTimeoutSeconds: 1.5 },
      download: { ...TEST_DOWNLOAD, timeouts: { connectSeconds: 1, firstByteSeconds: 1, totalSeconds: 1 } },
      imaged: { ...t.config.imaged, timeoutSeconds: 2 },
      thumbnail: { ...t.config.thumbnail, timeoutSeconds: 1 },
    });
    const imaged = await startImaged(config, { LIS_DATABASE_URL: relay.url });
    closers.push(imaged.stop);
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    // claim-row.ts's statement: its text goes out in its Parse, the first claim of a connection.
    const claimSent = relay.stallAfter('FOR UPDATE OF c SKIP LOCKED))');
    const first = await rawGet(imaged.url, row.pathOf('small'));
    await claimSent;
    assert.equal(first.status, 503, first.body.toString());
    const lockedBy = async () =>
      (await sql<{ locked_by: string | null; attempts: number }>`SELECT locked_by, attempts FROM live_images WHERE id = ${row.id}`.execute(t.db)).rows[0];
    const held = await lockedBy();
    assert.notEqual(held.locked_by, null, `the server committed the claim: the row is locked by lis_imaged (${JSON.stringify(held)})`);
    relay.mend();
    await waitFor(async () => (await lockedBy()).locked_by === null, 30_000, 'the row given back once the path was back').catch((error: Error) => {
      throw new Error(`${error.message}; lis_imaged:\n${imaged.run.output()}`);
    });
    assert.equal((await lockedBy()).attempts, 0, 'nobody charged');
    // Connections that were open during the stall stay silent: each is dropped at its bound, then the pool's new ones
    // answer. The generation's session stays on the server, idle in its transaction with the image's lock, until
    // the server ends it (idle_in_transaction_session_timeout, 14 s): then the image can be made again.
    let last = '';
    await waitFor(
      async () => {
        const next = await rawGet(imaged.url, row.pathOf('small'));
        last = `${next.status} ${next.body.toString().slice(0, 200)}`;
        return next.status === 200;
      },
      60_000,
      'the next request made the thumbnail',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; the last answer: ${last}; lis_imaged:\n${imaged.run.output()}`);
    });
  });
});
