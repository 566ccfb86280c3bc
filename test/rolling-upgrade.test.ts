import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { migrateToLatest } from '../src/db/connect.ts';
import { knownMigrations } from '../src/db/schema-version.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/**
 * Upgrading a running deployment: hosts of two releases on one database for a while (the newer migrates first,
 * the older hosts are restarted on the new code in turn). Older releases' writes are their statements, in SQL.
 */
describe('a rolling upgrade: two releases on one database', () => {
  let t: TestDatabase;
  afterEach(async () => t?.drop());

  const applied = async () => (await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(t.db)).rows.map((r) => r.name);

  it("a schema a newer release migrated is current for this one: `lis db migrate` and every migrating start apply nothing, say so, and run (not Kysely's 'corrupted migrations')", async function () {
    this.timeout(30_000);
    t = await createTestDatabase();
    await sql`INSERT INTO kysely_migration (name, timestamp) VALUES ('2099-01-01T00-a-newer-release', now()::text)`.execute(t.db);
    const config = t.writeConfig();
    const migrate = spawnTs('bin/lis', ['db', 'migrate', '--config', config]);
    // The embedded default migrates at every command's and daemon's start: the same call.
    assert.deepEqual(await migrateToLatest(t.db), []);
    assert.equal((await migrate.exited).code, 0, migrate.output());
    assert.match(
      migrate.output(),
      /^schema is ahead of this code: 1 migration\(s\) of a newer release applied \(newest 2099-01-01T00-a-newer-release\), none of this code's missing; this code runs on it/,
    );

    // Ahead and behind at once (another branch's migrations, ours not applied): refused, saying which, nothing applied.
    const ours = knownMigrations().at(-1)!;
    await sql`DELETE FROM kysely_migration WHERE name = ${ours}`.execute(t.db);
    await assert.rejects(migrateToLatest(t.db), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_SCHEMA_MIXED');
      assert.match(
        error.message,
        new RegExp(
          `1 migration\\(s\\) applied that this code does not know \\(2099-01-01T00-a-newer-release\\), and 1 of its own not applied \\(${ours}\\)\\. Nothing was applied`,
        ),
      );
      return true;
    });
    assert.equal((await applied()).includes(ours), false);
  });

  it('a migration that fails undoes the ones before it in the same run, and says so', async () => {
    t = await createTestDatabase({ migrated: false });
    // A table a later migration makes, already there (made by hand): that migration fails, the earlier ones ran first.
    await sql`CREATE TABLE alerts_sent (key text)`.execute(t.db);
    await assert.rejects(migrateToLatest(t.db), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_MIGRATION');
      assert.match(
        error.message,
        /^migration 2026-11-29T03-alerts-sent failed: relation "alerts_sent" already exists; nothing was applied \(the \d+ pending migration\(s\) run in one transaction\), the schema is as it was$/,
      );
      return true;
    });
    assert.deepEqual(await applied(), []);
    const { rows } = await sql<{ t: string | null }>`SELECT to_regclass('live_images')::text AS t`.execute(t.db);
    assert.equal(rows[0].t, null, 'the first migration undone with the rest');
  });
});
