import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { deliverAlerts } from '../src/alerts/deliver-alerts.ts';
import type { Alert } from '../src/alerts/alert.ts';
import { migrateToLatest } from '../src/db/migrate-schema.ts';
import { knownMigrations } from '../src/db/schema-version.ts';
import { recordFrontendHealth } from '../src/push/frontend-health.ts';
import type { FrontendTransfer } from '../src/push/push-to-frontends.ts';
import pg from 'pg';
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

  it("an older release's pusher (no down_host) clears no other host's down mark, and leaves no host name on a frontend that is up", async () => {
    t = await createTestDatabase();
    await sql`INSERT INTO frontends (name, target) VALUES ('n1', '/srv/n1'), ('n2', '/srv/n2')`.execute(t.db);
    const transfer = (frontend: string, ok: boolean) =>
      ({
        frontend,
        outcome: ok ? { ok: true } : { ok: false, errorClass: 'rsync_error', message: 'rsync exit 5: auth failed on module thumbs' },
      }) as unknown as FrontendTransfer;
    // The older release's statements (src/push/frontend-health.ts before down_host).
    const olderMarks = (name: string) =>
      sql`UPDATE frontends SET down_since = coalesce(down_since, now()), down_reason = 'frontend_down: refused' WHERE name = ${name}`.execute(t.db);
    const olderClears = (name: string) =>
      sql`UPDATE frontends SET down_since = NULL, down_reason = NULL WHERE name IN (${name}) AND down_since IS NOT NULL`.execute(t.db);
    const marks = async () =>
      Object.fromEntries(
        (await t.db.selectFrom('frontends').select(['name', 'down_since', 'down_reason', 'down_host']).orderBy('name').execute()).map((r) => [
          r.name,
          r.down_since ? `down (${r.down_host ?? 'no host'}): ${r.down_reason}` : `up${r.down_host ? ` (${r.down_host})` : ''}`,
        ]),
      );

    // n1 refuses web2 (this release); web1, of the older one, pushes to it fine: the mark stays web2's.
    await recordFrontendHealth(t.db, [transfer('n1', false)], 'web2');
    const since = (await t.db.selectFrom('frontends').select('down_since').where('name', '=', 'n1').executeTakeFirstOrThrow()).down_since;
    await olderClears('n1');
    assert.deepEqual(await marks(), { n1: 'down (web2): rsync_error: rsync exit 5: auth failed on module thumbs', n2: 'up' });
    assert.deepEqual(
      (await t.db.selectFrom('frontends').select('down_since').where('name', '=', 'n1').executeTakeFirstOrThrow()).down_since,
      since,
      'down since the first failure still: the alert can fire',
    );
    // web2's own success clears it.
    await recordFrontendHealth(t.db, [transfer('n1', true)], 'web2');
    assert.deepEqual(await marks(), { n1: 'up', n2: 'up' });

    // An older host's mark names no host (as in its release): any host's success clears it, the older one's too.
    await olderMarks('n2');
    assert.deepEqual((await marks()).n2, 'down (no host): frontend_down: refused');
    await olderClears('n2');
    await olderMarks('n2');
    await recordFrontendHealth(t.db, [transfer('n2', true)], 'web2');
    assert.deepEqual(await marks(), { n1: 'up', n2: 'up' });
  });

  it("an alert an older release's manager sent (it claims and sends with one INSERT, no delivered_at) is not sent again by a newer one beside it", async () => {
    t = await createTestDatabase();
    const alert: Alert = {
      kind: 'frontend_down',
      key: 'frontend_down:n1:2026-12-01T03:00:00.000Z',
      subject: 'frontend n1 unreachable for over 30 min',
      detail: '',
      action: '',
    };
    // The older manager's statement (src/alerts/deliver-alerts.ts before 2026-11-30T01), ten minutes ago; its send went out.
    await sql`INSERT INTO alerts_sent AS s (key, kind, subject) VALUES (${alert.key}, ${alert.kind}, ${alert.subject})
              ON CONFLICT (key) DO UPDATE SET sent_at = now(), subject = EXCLUDED.subject WHERE s.sent_at <= now() - interval '6 hours'`.execute(t.db);
    await sql`UPDATE alerts_sent SET sent_at = now() - interval '10 minutes'`.execute(t.db);
    const sent: string[] = [];
    const report = await deliverAlerts(t.db, [alert], { dedupeMinutes: 360, maxPerHour: 20 }, (a) => Promise.resolve((sent.push(a.key), true)));
    assert.deepEqual(sent, [], 'told once, by the older manager');
    assert.equal(report.repeated, 1);
    // This release's own claims still start undelivered (a manager dying before its send leaves one to be taken again).
    const next: Alert = { ...alert, key: 'frontend_down:n2:2026-12-01T03:00:00.000Z' };
    await deliverAlerts(t.db, [next], { dedupeMinutes: 360, maxPerHour: 20 }, async () => {
      const { rows } = await sql<{ d: Date | null }>`SELECT delivered_at AS d FROM alerts_sent WHERE key = ${next.key}`.execute(t.db);
      assert.equal(rows[0].d, null, 'claimed, not yet delivered, while it is sent');
      return true;
    });
  });

  it('a migration waiting for a table another session holds gives up after its lock wait, naming that session, rather than stall the daemons behind it', async () => {
    t = await createTestDatabase();
    // The schema before 2026-12-01T03-alerts-delivered-by-default (an ALTER TABLE of alerts_sent).
    await sql`ALTER TABLE alerts_sent ALTER COLUMN delivered_at DROP DEFAULT`.execute(t.db);
    await sql`DELETE FROM kysely_migration WHERE name = '2026-12-01T03-alerts-delivered-by-default'`.execute(t.db);
    // An operator's psql left in a transaction that read the table.
    const psql = new pg.Client({ connectionString: t.url, application_name: 'psql' });
    await psql.connect();
    try {
      await psql.query('BEGIN');
      await psql.query('SELECT count(*) FROM alerts_sent');
      const { rows } = await psql.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // Bounded for the test as it was before (no lock wait): the session ends after 3 s and the migration then goes on.
      const ends = setTimeout(() => void psql.query('COMMIT'), 3000);
      try {
        const started = Date.now();
        await assert.rejects(migrateToLatest(t.db, 200), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'ERR_MIGRATION_LOCKED');
          assert.match(error.message, /^migration 2026-12-01T03-alerts-delivered-by-default waited 0\.2s for a lock on a table another session holds/);
          assert.match(
            error.message,
            new RegExp(
              `nothing was applied\\. Sessions in a transaction for longer: pid ${rows[0].pid} \\(psql, idle in transaction for \\d+s: SELECT pg_backend_pid`,
            ),
          );
          return true;
        });
        assert.ok(Date.now() - started < 2500, 'gave up before the session ended');
      } finally {
        clearTimeout(ends);
      }
      assert.equal((await applied()).includes('2026-12-01T03-alerts-delivered-by-default'), false);
      await psql.query('COMMIT');
    } finally {
      await psql.end();
    }
    assert.deepEqual(
      (await migrateToLatest(t.db, 200)).map((r) => r.migrationName),
      ['2026-12-01T03-alerts-delivered-by-default'],
    );
  });
});
