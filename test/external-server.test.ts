import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { sql } from 'kysely';
import { parseConfig } from '../src/config/load-config.ts';
import type { LisConfig } from '../src/config/config-schema.ts';
import { createDb, type Db } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate-schema.ts';
import { openDatabase, openDatabaseWaiting } from '../src/db/open-database.ts';
import { serviceQueryBounds } from '../src/db/query-bounds.ts';
import { dropDatabase, recreateDatabase } from '../src/db/recreate-database.ts';
import { clientUrl } from '../src/db/client-config.ts';
import { probeServer } from '../src/db/probe-server.ts';
import { serverUnfit } from '../src/db/server-fit.ts';
import { registerWorker } from '../src/daemon/worker-registry.ts';
import { ImageSys } from '../src/interface/image-sys.ts';
import { workerReport } from '../src/manager/worker-report.ts';
import { WorkNotifier } from '../src/queue/work-notifier.ts';
import { ExternalPostgres, TEST_CERT } from './helpers/external-postgres.ts';
import { spawnTs } from './helpers/processes.ts';
import { within } from './helpers/within-deadline.ts';

/** The app's role: owns its database, no superuser, no CREATEDB; a password as a DBA's generator makes them. */
const APP = { user: 'lis_app', password: 'p@ss:w/rd?&' };

describe("an external PostgreSQL: SSL only, a DBA's settings, pgbouncer in front", function () {
  this.timeout(60_000);
  let server: ExternalPostgres;
  const opened: { destroy(): Promise<void> }[] = [];
  const configFor = (url: string): LisConfig => parseConfig({ database: { url, connectTimeoutSeconds: 5, queryTimeoutSeconds: 5 } }, {}, process.cwd(), 'test');
  const open = async (url: string, options: Parameters<typeof openDatabase>[1] = {}): Promise<Db> => {
    const db = await openDatabase(configFor(url), options);
    opened.push(db);
    return db;
  };
  const notified = async (url: string, notifyOn: Db) => {
    const warned: string[] = [];
    const notifier = new WorkNotifier(
      url,
      'uk:download',
      { warn: (m) => warned.push(m), info: () => {} },
      { bounds: serviceQueryBounds(configFor(url)), checkEveryMs: 60_000 },
    );
    try {
      await notifier.start();
      const woken = notifier.wait(3_600_000, new AbortController().signal, notifier.mark());
      await sql`SELECT pg_notify('lis_work', 'uk:download')`.execute(notifyOn);
      await within(woken, 'the wait, woken by a notification', 10_000);
      assert.deepEqual(warned, []);
    } finally {
      await notifier.close();
    }
  };
  /** The certificate checked against its own CA: the query every pg version reads alike. */
  const CHECKED = `sslmode=verify-full&sslrootcert=${TEST_CERT}`;
  const appUrl = (query: string, database = 'lis', port?: number) => server.url(APP.user, APP.password, database, query, port);

  before(async () => {
    server = await ExternalPostgres.start({ poolModes: ['session', 'transaction'], poolerUsers: [APP] });
    await server.admin(
      'postgres',
      `CREATE ROLE ${APP.user} LOGIN PASSWORD '${APP.password}'`,
      `CREATE DATABASE lis OWNER ${APP.user}`,
      // A role with a DBA's settings at odds with ours, and one whose sessions are read-only.
      `CREATE ROLE lis_dba LOGIN PASSWORD 'dba' IN ROLE ${APP.user}`,
      `ALTER ROLE lis_dba SET DateStyle = 'SQL, DMY'`,
      `ALTER ROLE lis_dba SET IntervalStyle = 'sql_standard'`,
      `ALTER ROLE lis_dba SET default_transaction_isolation = 'serializable'`,
      `ALTER ROLE lis_dba SET statement_timeout = '200ms'`,
      `ALTER ROLE lis_dba SET lock_timeout = '100ms'`,
      `ALTER ROLE lis_dba SET idle_session_timeout = '300ms'`,
      `CREATE ROLE lis_ro LOGIN PASSWORD 'ro' IN ROLE ${APP.user}`,
      `ALTER ROLE lis_ro SET default_transaction_read_only = on`,
      // A database whose public schema (PostgreSQL 15+: the database owner's) the app's role may not create in.
      'CREATE DATABASE lis_locked',
      // One whose search_path, for the app's role, names a schema that does not exist.
      `CREATE DATABASE lis_nowhere OWNER ${APP.user}`,
      `ALTER ROLE ${APP.user} IN DATABASE lis_nowhere SET search_path = nowhere`,
    );
    const db = createDb(appUrl(CHECKED), 1);
    try {
      await migrateToLatest(db);
    } finally {
      await db.destroy();
    }
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((db) => db.destroy()));
  });
  after(async () => {
    await server?.stop();
  });

  it('sslmode=require is read as libpq reads it (encrypted, the self-signed certificate taken); verify-full checks it against sslrootcert', async () => {
    const url = appUrl('sslmode=require');
    const db = await open(url, { bounds: serviceQueryBounds(configFor(url)) });
    const { rows } = await sql<{ ssl: boolean }>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(db);
    assert.equal(rows[0].ssl, true);
    assert.deepEqual(await probeServer(url, { connectMs: 5000, queryMs: 5000 }), { answered: true });
    // The LISTEN connection of an idle daemon, over SSL too.
    await notified(url, db);
    // The Interface, with the certificate checked (host name included) against its own CA.
    const lis = await ImageSys.open({ config: { database: { url: appUrl(`sslmode=verify-full&sslrootcert=${TEST_CERT}`, 'lis') } } });
    try {
      assert.deepEqual([...(await lis.getSearchApiDataForHashes(['0'.repeat(32)])).values()], [null]);
    } finally {
      await lis.close();
    }
    // prefer, and allow, to a server that takes SSL (this one takes nothing else): encrypted, the self-signed
    // certificate taken, as libpq does (allow was read by pg as verify-full: "self-signed certificate").
    for (const mode of ['prefer', 'allow']) {
      const preferred = await open(appUrl(`sslmode=${mode}`));
      const { rows: over } = await sql<{ ssl: boolean }>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(preferred);
      assert.equal(over[0].ssl, true, mode);
    }
  });

  it('an SSL the URL and the server disagree on is named with what to do, at once (a service does not wait it out)', async () => {
    await assert.rejects(open(appUrl('')), (error: Error) => {
      assert.match(
        error.message,
        /^cannot connect to the database at 127\.0\.0\.1:\d+\/lis as lis_app: no pg_hba\.conf entry .*no encryption \(the server accepts only SSL connections from here: add sslmode=/,
      );
      return true;
    });
    const unchecked = appUrl('sslmode=verify-full');
    await assert.rejects(open(unchecked), /self-signed certificate \(the server's certificate was not accepted: give the CA that signed it with sslrootcert=/);
    const started = Date.now();
    const service = openDatabaseWaiting(configFor(unchecked), { retryForMs: 600_000, signal: new AbortController().signal, onRetry: () => {} });
    await assert.rejects(service, /the server's certificate was not accepted/);
    assert.ok(Date.now() - started < 5000, 'refused at once, not waited out');
    await assert.rejects(open(appUrl('sslmode=verify-full&sslrootcert=/nonexistent/ca.crt')), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_CONFIG');
      assert.match(error.message, /names sslrootcert=\/nonexistent\/ca\.crt, which cannot be read: ENOENT/);
      assert.doesNotMatch(error.message, /p@ss/);
      return true;
    });
  });

  it("a DBA's short idle_session_timeout does not end our sessions (LISTEN, the upkeep's lock, the pools' connections idle on purpose)", async () => {
    const url = server.url('lis_dba', 'dba', 'lis', CHECKED);
    const db = await open(url, { bounds: serviceQueryBounds(configFor(url)) });
    const { rows } = await sql<{ idle: string; pid: number }>`SELECT current_setting('idle_session_timeout') AS idle, pg_backend_pid() AS pid`.execute(db);
    assert.equal(rows[0].idle, '0');
    // A session as the role's settings leave it, opened after ours: once the server has ended it for idling, ours
    // (idle at least as long) is asked again. Before, the server had ended it too (57P05), and the pool's next query
    // came on a new session; the upkeep's lock went with its.
    const bare = new pg.Client({ connectionString: clientUrl(url) });
    const ended = new Promise<string>((resolve) => bare.on('error', (error: Error & { code?: string }) => resolve(error.code ?? error.message)));
    await bare.connect();
    await bare.query('SELECT 1');
    assert.equal(await within(ended, "end of the role's idle session by the server", 20_000), '57P05');
    await bare.end().catch(() => {});
    const again = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db);
    assert.equal(again.rows[0].pid, rows[0].pid, 'the same session, not ended');
  });

  it("a DBA's role settings (DateStyle, IntervalStyle, serializable, short statement and lock timeouts) do not change how our sessions read or wait", async () => {
    const url = server.url('lis_dba', 'dba', 'lis', CHECKED);
    for (const bounds of [undefined, serviceQueryBounds(configFor(url))]) {
      const db = await open(url, { bounds });
      const { rows } = await sql<{ at: Date; span: unknown; iso: string; timeout: string; lock: string }>`
        SELECT now() AS at, interval '90 seconds' AS span, current_setting('transaction_isolation') AS iso,
               current_setting('statement_timeout') AS timeout, current_setting('lock_timeout') AS lock, (SELECT 1 FROM pg_sleep(0.3)) AS slept`.execute(db);
      assert.ok(rows[0].at instanceof Date && Math.abs(rows[0].at.getTime() - Date.now()) < 60_000, `a timestamp read as such: ${String(rows[0].at)}`);
      assert.equal(String((rows[0].span as { seconds?: number }).seconds), '30');
      assert.equal(rows[0].iso, 'read committed');
      assert.equal(rows[0].timeout, bounds ? '5s' : '0', "ours: the role's 200ms would have cut the 0.3 s statement");
      assert.equal(rows[0].lock, '0');
      await registerWorker(db, { id: `dba:${bounds ? 1 : 0}:x`, component: 'downloadd', host: 'dba', pid: 1, country: 'uk' });
      const report = await workerReport(db, 60);
      assert.ok(
        report.every((r) => r.startedAt instanceof Date && !Number.isNaN(r.startedAt.getTime())),
        'lis worker-report reads its dates',
      );
    }
  });

  it('a read-only database (a replica, default_transaction_read_only) is refused at start by writers, naming it; the status page and reads through the Interface may use it', async () => {
    const url = server.url('lis_ro', 'ro', 'lis', CHECKED);
    await assert.rejects(open(url), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_DATABASE_READ_ONLY');
      assert.match(
        error.message,
        /is read-only \(default_transaction_read_only is on for this role or database\); ImageSys writes to its tables: point the URL/,
      );
      return true;
    });
    // The Interface opens on it (listing pages may read from a replica); its writes say why they fail.
    const lis = await ImageSys.open({ config: { database: { url } } });
    try {
      assert.equal(await lis.getSearchApiDataForHash('0'.repeat(32)), null);
      await assert.rejects(
        lis.imagesForSiBuild(['http://example.com/a.jpg'], { country: 'uk', datasourceId: 1 }),
        /cannot execute INSERT in a read-only transaction/,
      );
    } finally {
      await lis.close();
    }
    await open(url, { readOnly: true });
    // `lis db status` says it too, where an operator looks first: exit 4, the same words.
    const status = spawnTs('bin/lis', ['db', 'status'], { LIS_DATABASE_URL: url });
    assert.equal((await status.exited).code, 4, status.output());
    assert.match(status.output(), /^server: PostgreSQL \d+\.\d+.*: ImageSys cannot run on it \(ERR_DATABASE_READ_ONLY\): the database at .* is read-only/m);
    assert.match(status.output(), /^schema: /m);
    const old = serverUnfit({ versionNum: 120017, version: '12.17', inRecovery: false, readOnlyDefault: false }, 'db1:5432/lis', false);
    assert.equal(old?.code, 'ERR_DATABASE_VERSION');
    assert.match(old.message, /is PostgreSQL 12\.17; ImageSys needs PostgreSQL 13 or newer/);
  });

  it('a role that may not create tables, or whose search_path has no schema, is told how to migrate', async () => {
    const db = createDb(appUrl(CHECKED, 'lis_locked'), 1);
    try {
      await assert.rejects(migrateToLatest(db), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_MIGRATION');
        assert.match(
          error.message,
          /permission denied for schema public \(the role lis_app may not create or change the tables: run `lis db migrate` with a URL whose role owns the schema/,
        );
        return true;
      });
    } finally {
      await db.destroy();
    }
    const nowhere = createDb(appUrl(CHECKED, 'lis_nowhere'), 1);
    try {
      await assert.rejects(migrateToLatest(nowhere), /no schema has been selected to create in \(the role's search_path names no schema that exists/);
    } finally {
      await nowhere.destroy();
    }
  });

  it('lis demo on a database of another role, or without CREATEDB, says which (not "a session our role may not end is on it")', async () => {
    const serverUrl = appUrl(CHECKED, 'postgres');
    await assert.rejects(dropDatabase(serverUrl, 'lis_locked'), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_DB_NOT_OWNER');
      assert.match(
        error.message,
        /^cannot drop database lis_locked at 127\.0\.0\.1:\d+\/postgres as lis_app: must be owner of database lis_locked; drop it as its owner/,
      );
      return true;
    });
    await assert.rejects(
      recreateDatabase(serverUrl, 'lis_demo_new'),
      /cannot create database lis_demo_new at .*: permission denied to create database \(the role needs CREATEDB\)/,
    );
  });

  it('a migration that gives up on a lock names the session holding it, also one of another role whose details it may not see', async () => {
    // A migration pending: the newest one's index dropped and its record removed, as before the upgrade.
    await server.admin('lis', 'DROP INDEX live_images_failed', "DELETE FROM kysely_migration WHERE name = '2026-12-01T05-failed-rows-index'");
    // A daemon of another role (lis_dba: the app role cannot see its sessions' state) in a transaction that wrote the table.
    // Without lis_dba's idle_session_timeout (300 ms, for the test of it above): on a loaded machine the server ended this
    // session between its statements, an error on a client nobody listened to, and the run stopped at it (uncaught).
    const holder = new pg.Client({ connectionString: clientUrl(server.url('lis_dba', 'dba', 'lis', CHECKED)), options: '-c idle_session_timeout=0' });
    await holder.connect();
    assert.equal((await holder.query<{ idle_session_timeout: string }>('SHOW idle_session_timeout')).rows[0].idle_session_timeout, '0');
    const db = createDb(appUrl(CHECKED), 1);
    try {
      await holder.query('BEGIN');
      await holder.query('UPDATE live_images SET attempts = attempts WHERE false');
      const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await assert.rejects(migrateToLatest(db, 300), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_MIGRATION_LOCKED');
        assert.match(
          error.message,
          new RegExp(`Sessions in a transaction for longer: pid ${rows[0].pid} \\(\\?, role lis_dba, holding locks here; its state and query are hidden`),
        );
        return true;
      });
      await holder.query('ROLLBACK');
      assert.equal((await migrateToLatest(db)).length, 1);
    } finally {
      await holder.end();
      await db.destroy();
    }
  });

  it('pgbouncer in session mode: bounded sessions, a migration with its lock bound, and LISTEN wake-ups all work through it', async () => {
    const port = server.poolerPorts.get('session')!;
    const url = appUrl('', 'lis', port);
    const db = await open(url, { bounds: serviceQueryBounds(configFor(url)) });
    const { rows } = await sql<{ timeout: string }>`SELECT current_setting('statement_timeout') AS timeout`.execute(db);
    assert.equal(rows[0].timeout, '5s');
    await notified(url, db);
    // A parameter of the URL's own that pgbouncer does not know: said as such, and not waited out by a service.
    const withOptions = appUrl('options=-c%20search_path%3Dpublic', 'lis', port);
    const refused = /unsupported startup parameter: options \(a pooler in front refuses a parameter of the URL: take options out of the URL/;
    await assert.rejects(open(withOptions), refused);
    await assert.rejects(
      openDatabaseWaiting(configFor(withOptions), { retryForMs: 600_000, signal: new AbortController().signal, onRetry: () => {} }),
      refused,
    );
    const status = spawnTs('bin/lis', ['db', 'status'], { LIS_DATABASE_URL: url });
    assert.equal((await status.exited).code, 0, status.output());
    assert.match(status.output(), /^server: PostgreSQL \d+\.\d+.*, read-write, a server session per connection \(ImageSys runs on it\)$/m);
    await server.admin('postgres', `CREATE DATABASE lis_pooled OWNER ${APP.user}`);
    const fresh = createDb(appUrl('', 'lis_pooled', port), 1, undefined, { connectMs: 5000 });
    try {
      assert.ok((await migrateToLatest(fresh)).length > 0);
    } finally {
      await fresh.destroy();
    }
  });

  it('pgbouncer in transaction mode is refused at start, naming it: commands, services, the Interface, lis db migrate', async () => {
    const url = appUrl('', 'lis', server.poolerPorts.get('transaction'));
    const named = /is reached through a pooler that shares server sessions between transactions \(transaction or statement pooling: .*pool_mode = session/;
    await assert.rejects(open(url), named);
    await assert.rejects(open(url, { bounds: serviceQueryBounds(configFor(url)) }), { code: 'ERR_DATABASE_POOLER' });
    const started = Date.now();
    await assert.rejects(
      openDatabaseWaiting(configFor(url), {
        retryForMs: 600_000,
        signal: new AbortController().signal,
        onRetry: () => {},
        bounds: serviceQueryBounds(configFor(url)),
      }),
      { code: 'ERR_DATABASE_POOLER' },
    );
    assert.ok(Date.now() - started < 5000, 'refused at once, not waited out');
    await assert.rejects(ImageSys.open({ config: { database: { url } } }), named);
    const migrate = spawnTs('bin/lis', ['db', 'migrate'], { LIS_DATABASE_URL: url });
    assert.equal((await migrate.exited).code, 1);
    assert.match(migrate.output(), named);
    assert.doesNotMatch(migrate.output(), /p@ss/);
    const status = spawnTs('bin/lis', ['db', 'status'], { LIS_DATABASE_URL: url });
    assert.equal((await status.exited).code, 4, status.output());
    assert.match(status.output(), /^server: PostgreSQL .*: ImageSys cannot run on it \(ERR_DATABASE_POOLER\): /m);
    assert.doesNotMatch(status.output(), /p@ss/);
  });
});

describe('a database URL with white space in it', () => {
  it("reaches pg with its password whole (a certificate's path with a space, written as libpq takes it)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-url space-'));
    try {
      const cert = path.join(dir, 'our ca.crt');
      fs.copyFileSync(TEST_CERT, cert);
      const url = `postgresql://lis_app:${encodeURIComponent(APP.password)}@127.0.0.1:5432/lis?sslmode=verify-full&sslrootcert=${cert}`;
      const read = (connectionString: string) =>
        (new pg.Client({ connectionString }) as unknown as { connectionParameters: { user: string; password: string; database: string } }).connectionParameters;
      // Why: given as it is, pg reads it by another road, which decodes the password only in part ("wrong password").
      assert.notEqual(read(url).password, APP.password);
      assert.deepEqual([read(clientUrl(url)).user, read(clientUrl(url)).password, read(clientUrl(url)).database], ['lis_app', APP.password, 'lis']);
      assert.match(clientUrl(url), /sslrootcert=[^&]*our%20ca\.crt&uselibpqcompat=true$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
