// A PostgreSQL restart (fast shutdown) sends every session a FATAL 57P01 at once. A pooled connection that had
// just been answered its session settings (session-settings.ts, the first statement of each connection) got it in
// the same chunk as that answer: pg emits it as an 'error' event on the client, before the pool has put its own
// listener on the client (that comes when the connect is done), and the process died of an unhandled 'error'
// (lis_thumbnaild in the chaos run, under load). Now the connect fails with it, and the next one works.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { closeDb, createDb } from '../src/db/connect.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { databasePerTest, type TestDatabase } from './helpers/test-database.ts';

describe('a pooled connection ended by a server shutdown right after its session settings', () => {
  let t: TestDatabase;
  const cleanups = databasePerTest((made) => (t = made));

  it("fails that connect with the server's error, crashes nothing, and the next connection works", async () => {
    const proxy = await startDatabaseProxy(t.url);
    cleanups.push(() => proxy.cut());
    const errors: Error[] = [];
    const db = createDb(proxy.url, 2, (error) => errors.push(error));
    cleanups.push(() => closeDb(db, 5_000));
    proxy.terminateAfterReply('set_config(');
    await assert.rejects(sql`SELECT 1`.execute(db), (error: Error & { code?: string }) => {
      assert.equal(error.code, '57P01', String(error));
      return true;
    });
    const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(db);
    assert.deepEqual(rows, [{ one: 1 }]);
  });
});
