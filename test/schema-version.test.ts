import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { ImageSys } from '../src/interface/image-sys.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { compareMigrations, knownMigrations } from '../src/db/schema-version.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { freePort } from './helpers/free-port.ts';

const newest = () => knownMigrations().at(-1)!;

describe('schema version: clients check, only installers migrate', () => {
  let t: TestDatabase;
  afterEach(async () => t?.drop());

  it('compares applied migrations with the known ones (a database ahead of the code is current)', () => {
    assert.deepEqual(compareMigrations(['a', 'b', 'c'], ['a', 'b']), { current: false, lastApplied: 'b', newestKnown: 'c', missing: ['c'], unknown: [] });
    assert.deepEqual(compareMigrations(['a', 'b'], ['b', 'a', 'z']), { current: true, lastApplied: 'z', newestKnown: 'b', missing: [], unknown: ['z'] });
    assert.equal(compareMigrations(['a'], []).lastApplied, null);
  });

  it('ImageSys.open refuses a database whose schema is behind, with ERR_SCHEMA_BEHIND, and migrates nothing', async () => {
    t = await createTestDatabase();
    await sql`DELETE FROM kysely_migration WHERE name = ${newest()}`.execute(t.db);
    await assert.rejects(ImageSys.open({ config: t.config }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_SCHEMA_BEHIND');
      assert.match(error.message, new RegExp(`1 migration\\(s\\) not applied .*newest known ${newest()}.*lis db migrate`));
      return true;
    });
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM kysely_migration WHERE name = ${newest()}`.execute(t.db);
    assert.equal(rows[0].n, '0', 'the Interface did not migrate');
  });

  it('ImageSys.open on an empty database says the schema is missing and creates no table', async () => {
    t = await createTestDatabase({ migrated: false });
    await assert.rejects(ImageSys.open({ config: t.config }), { code: 'ERR_SCHEMA_BEHIND', message: /last applied none/ });
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'`.execute(t.db);
    assert.equal(rows[0].n, '0');
  });

  it('ImageSys.open never starts the embedded server: none set up, ERR_EMBEDDED_PG, no data folder made', async () => {
    t = await createTestDatabase();
    const dataDir = path.join(t.dir, 'pg');
    const config = parseConfig({ database: { embedded: { dataDir, port: await freePort() } } }, {}, t.dir);
    // Never set up: no password file to connect with, so it says what to run rather than making one.
    await assert.rejects(ImageSys.open({ config }), { code: 'ERR_EMBEDDED_PG', message: /run `npx lis db start`/ });
    assert.equal(fs.existsSync(dataDir), false);
  });

  it('a daemon against a configured server refuses a schema that is behind; after `lis db migrate` it runs', async function () {
    this.timeout(90_000);
    t = await createTestDatabase({ migrated: false });
    const config = t.writeConfig();
    const refused = spawnTs('bin/lis_managerd', ['--check', 'stuck_jobs', '--config', config]);
    assert.equal((await refused.exited).code, 1, refused.output());
    assert.match(refused.output(), /schema of .* is behind this code.*run `lis db migrate`/);
    const migrate = spawnTs('bin/lis', ['db', 'migrate', '--config', config]);
    assert.equal((await migrate.exited).code, 0, migrate.output());
    const ran = spawnTs('bin/lis_managerd', ['--check', 'stuck_jobs', '--config', config]);
    assert.equal((await ran.exited).code, 0, ran.output());
  });
});
