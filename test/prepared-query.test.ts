// runPrepared: a statement PostgreSQL parses and plans once per connection, on a pool and inside a transaction.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { preparedName, runPrepared } from '../src/db/prepared-query.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** The named statements this session has prepared (pg_prepared_statements shows only the asking session's). */
const preparedHere = async (db: TestDatabase['db']) =>
  (await sql<{ name: string }>`SELECT name FROM pg_prepared_statements`.execute(db)).rows.map((r) => r.name);

describe('prepared statements (runPrepared)', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('inside a transaction, as on the pool: prepared once on the connection, then run by name, with the right rows each time', async () => {
    const query = (n: number) => sql<{ doubled: number }>`SELECT ${n}::int * 2 AS doubled`;
    await t.db.transaction().execute(async (trx) => {
      assert.deepEqual(await runPrepared(trx, query(2)), [{ doubled: 4 }]);
      assert.deepEqual(await runPrepared(trx, query(5)), [{ doubled: 10 }], 'the same statement, other values');
      const names = await preparedHere(trx);
      assert.equal(names.filter((name) => name.startsWith('lis_')).length, 1, `one named statement: ${names.join(', ')}`);
    });
  });

  it('names a statement by its text, so two texts never share a name', () => {
    assert.equal(preparedName('SELECT 1'), preparedName('SELECT 1'));
    assert.notEqual(preparedName('SELECT 1'), preparedName('SELECT 2'));
    assert.match(preparedName('SELECT 1'), /^lis_[0-9a-f]{24}$/);
  });
});
