import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { heartbeat, registerWorker } from '../src/daemon/worker-registry.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('a heartbeat is all or nothing', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it("a beat whose datasources' outcomes cannot be written writes nothing: sent again, it counts once", async () => {
    const id = 'host1:42:0badf00d';
    await registerWorker(t.db, { id, component: 'downloadd', host: 'host1', pid: 42, country: 'uk', stage: 'download' });
    // The second write of a beat fails, as a statement cut by the database's going away between the two would.
    await sql`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused (fixture)'; END $$`.execute(t.db);
    await sql`CREATE TRIGGER refuse BEFORE INSERT ON datasource_minutes FOR EACH ROW EXECUTE FUNCTION refuse()`.execute(t.db);
    const beat = { done: 5, failed: 2, holding: 0, country: 'uk', stage: 'download', outcomes: [{ datasourceId: 16, errorClass: '', n: 5 }] };
    await assert.rejects(heartbeat(t.db, id, beat), /refused \(fixture\)/);
    const figures = async () => {
      const worker = await t.db.selectFrom('workers').select(['rows_done', 'rows_failed']).where('id', '=', id).executeTakeFirstOrThrow();
      const minutes = await t.db.selectFrom('worker_minutes').select(['done', 'failed']).where('worker_id', '=', id).execute();
      return { worker: { rows_done: Number(worker.rows_done), rows_failed: Number(worker.rows_failed) }, minutes };
    };
    assert.deepEqual(await figures(), { worker: { rows_done: 0, rows_failed: 0 }, minutes: [] }, 'nothing of the failed beat kept');

    await sql`DROP TRIGGER refuse ON datasource_minutes`.execute(t.db);
    assert.equal(await heartbeat(t.db, id, beat), true);
    assert.deepEqual(await figures(), { worker: { rows_done: 5, rows_failed: 2 }, minutes: [{ done: 5, failed: 2 }] }, 'the beat sent again, counted once');
    const { rows } = await sql<{ n: number }>`SELECT sum(n)::int AS n FROM datasource_minutes WHERE datasource_id = 16`.execute(t.db);
    assert.equal(rows[0].n, 5);
  });
});
