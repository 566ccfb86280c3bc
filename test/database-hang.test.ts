// A database that hangs (accepts, or keeps, the connection and never answers), as opposed to one that
// refuses: the daemons' runner says so, pauses, carries on when it answers again, charges nobody, and a
// stop still ends the process within its grace.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { connectionFailure } from '../src/db/connect.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('a database that hangs', function () {
  this.timeout(90_000);
  let t: TestDatabase;
  const cleanups: Array<() => Promise<void> | void> = [];
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await t.drop();
  });

  it('a client whose connection broke ("not queryable") is the database away, named as such, for every caller', async () => {
    const client = new pg.Client({ connectionString: t.url });
    await client.connect();
    cleanups.push(() => client.end().catch(() => {}));
    const broken = new Promise((resolve) => client.once('error', resolve));
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await sql`SELECT pg_terminate_backend(${rows[0].pid})`.execute(t.db);
    await broken;
    const error = await client.query('SELECT 1').then(
      () => null,
      (e: Error) => e,
    );
    assert.match(String(error?.message), /is not queryable/, 'pg says it so');
    const away = connectionFailure(t.url, error);
    assert.equal(away?.code, 'ERR_DATABASE');
    assert.match(
      String(away?.message),
      /^cannot connect to the database at 127\.0\.0\.1:\d+\/lis_test_\w+ as \w+: Client has encountered a connection error and is not queryable$/,
    );
  });
});
