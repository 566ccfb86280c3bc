import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { parseConfig } from '../src/config/load-config.ts';
import { openDatabase } from '../src/db/open-database.ts';
import { ImageSys } from '../src/interface/image-sys.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('sslmode=prefer or allow to a server with SSL off: a plain connection, as libpq makes', () => {
  let t: TestDatabase;
  beforeEach(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => {
    await t.drop();
  });

  /** The test database's URL with `sslmode`; the daemons' database opened with it is asserted to be plain. */
  const plainWith = async (sslmode: string): Promise<string> => {
    const url = `${t.url}${t.url.includes('?') ? '&' : '?'}sslmode=${sslmode}`;
    const db = await openDatabase(parseConfig({ database: { url } }, {}, process.cwd(), 'test'));
    try {
      const { rows } = await sql<{ ssl: boolean }>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(db);
      assert.equal(rows[0].ssl, false);
    } finally {
      await db.destroy();
    }
    return url;
  };

  it('the daemons\' database, the Interface and lis db status connect (before: "The server does not support SSL connections")', async () => {
    const url = await plainWith('prefer');
    const lis = await ImageSys.open({ config: { database: { url } } });
    try {
      assert.equal(await lis.getSearchApiDataForHash('0'.repeat(32)), null);
    } finally {
      await lis.close();
    }
    const status = spawnTs('bin/lis', ['db', 'status'], { LIS_DATABASE_URL: url });
    assert.equal((await status.exited).code, 0, status.output());
    assert.match(status.output(), /^schema: current$/m);
  });

  it('sslmode=allow too (before: pg read it as verify-full and asked for SSL)', async () => {
    await plainWith('allow');
  });
});
