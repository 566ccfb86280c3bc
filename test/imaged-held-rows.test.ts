import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { HeldRows } from '../src/imaged/held-rows.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { claimRow } from '../src/queue/claim-row.ts';
import { startImaged } from './helpers/imaged-fixtures.ts';
import { waitFor } from './helpers/processes.ts';
import { insertUrls } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** The rows' ids, oldest first, and who holds each. */
async function holders(t: TestDatabase): Promise<Array<{ id: string; locked_by: string | null; attempts: number }>> {
  return t.db.selectFrom('live_images').select(['id', 'locked_by', 'attempts']).orderBy('id').execute();
}

describe('lis_imaged after a lost connection: rows the database says it holds and no request has in hand go back', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  const closers: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
    await t.drop();
  });

  it('a database restored from a backup under a running lis_imaged: the rows the backup has it hold are given back uncharged', async () => {
    const imaged = await startImaged(t.writeConfig({ queue: { heartbeatSeconds: 0.2 } }));
    closers.push(imaged.stop);
    const registered = () => t.db.selectFrom('workers').select('id').where('component', '=', 'imaged').executeTakeFirst();
    await waitFor(async () => (await registered()) !== undefined, 10_000, 'lis_imaged registered');
    const worker = (await registered())!.id;
    // The restore: rows it had claimed for requests when the backup was taken come back held by it, and every
    // session of the database is ended.
    await insertUrls(t.db, 'uk', 4);
    assert.equal((await claimChunk(t.db, { country: 'uk', stage: 'download', workerId: worker, storeHost: '', limit: 4, afterId: '0' })).length, 4);
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${t.name} AND pid <> pg_backend_pid()`.execute(t.db);
    // Before, they stayed held by a process whose heartbeat was alive, until lis_managerd found it wedged.
    await waitFor(async () => (await holders(t)).every((r) => r.locked_by === null), 20_000, 'the rows given back');
    // Its line is logged once the give-back has committed, and reaches us through a pipe: waited for, not read at once
    // (a CI run read the output in between, once).
    const said =
      /Gave back 4 rows the database says this worker holds and no request has in hand \(after a lost connection: a database restored from a backup, or failed over\): no attempt charged/;
    await waitFor(() => said.test(imaged.run.output()), 10_000, 'the give-back logged').catch((error: Error) => {
      throw new Error(`${error.message}:\n${imaged.run.output()}`);
    });
    assert.ok(
      (await holders(t)).every((r) => r.attempts === 0),
      'no attempt charged',
    );
  });

  it('keeps a row a request has in hand, and never looks while a claim is under way (a claim committed but not yet answered is not a stray)', async () => {
    const log = createLogger({ component: 'imaged', log: t.config.log, screen: false });
    closers.push(() => closeLogger(log));
    const held = new HeldRows(t.db, 'box:1:aa', log);
    await insertUrls(t.db, 'uk', 3);
    const [a, b, c] = (await holders(t)).map((r) => r.id);
    // A request's claim of `a`, under way (committed, its answer not yet back); `b` held since the backup; `c` free.
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    let committed!: () => void;
    const claimCommitted = new Promise<void>((resolve) => (committed = resolve));
    const claim = held.claim(a, async () => {
      const row = await claimRow(t.db, a, 'box:1:aa', '');
      committed();
      await answered;
      return row;
    });
    await claimCommitted;
    await claimRow(t.db, b, 'box:1:aa', '');
    held.lost();
    await held.sweep();
    assert.deepEqual(
      (await holders(t)).map((r) => r.locked_by),
      ['box:1:aa', 'box:1:aa', null],
      'nothing given back while a claim is under way',
    );
    answer();
    assert.ok(await claim);
    assert.equal(held.size, 1);
    await held.sweep();
    assert.deepEqual(
      (await holders(t)).map((r) => r.locked_by),
      ['box:1:aa', null, null],
      'the stray given back, the row in hand kept',
    );
    // Looked at once per loss: a later turn gives back nothing more, though `c` is taken meanwhile by this worker.
    await claimRow(t.db, c, 'box:1:aa', '');
    await held.sweep();
    assert.equal((await holders(t)).find((r) => r.id === c)?.locked_by, 'box:1:aa');
    held.done(a);
    assert.equal(held.size, 0);
  });
});
