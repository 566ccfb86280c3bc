import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { createDb, databaseUrl } from '../src/db/connect.ts';
import { baseTestConfig } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';

describe('a pooled connection the server ends', () => {
  it('is told once (one `Database connection lost` line per connection on a restart, not two)', async () => {
    const url = await databaseUrl(baseTestConfig());
    const told: string[] = [];
    const db = createDb(url, 4, (error) => told.push(error.message));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    let check: NodeJS.Timeout | undefined;
    try {
      // Three connections at once in the pool, then idle.
      const pids = await Promise.all(
        [1, 2, 3].map(() => sql<{ pid: number }>`SELECT pg_backend_pid() AS pid, pg_sleep(0.1)`.execute(db).then((r) => r.rows[0].pid)),
      );
      assert.equal(new Set(pids).size, 3);
      // What a restart does to each: the server ends it (57P01).
      await admin.query('SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p', [pids]);
      await within(
        new Promise<void>((resolve) => {
          check = setInterval(() => told.length >= 3 && resolve(), 10);
        }),
        'word of the three connections lost',
        5000,
      );
      // A query on a new connection: the pool carries on, and every word of the lost ones has come by now.
      await sql`SELECT 1`.execute(db);
      assert.deepEqual(told, Array(3).fill('terminating connection due to administrator command'));
    } finally {
      clearInterval(check);
      await admin.end();
      await db.destroy();
    }
  });
});
