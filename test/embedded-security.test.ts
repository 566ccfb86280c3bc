import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfig } from '../src/config/load-config.ts';
import { createDb } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate-schema.ts';
import { dropDatabase, recreateDatabase } from '../src/db/recreate-database.ts';
import { passwordFile, readPassword, scramVerifier, writePassword } from '../src/db/embedded-credentials.ts';
import { startLegacyFolder } from './helpers/legacy-embedded.ts';
import { freePort } from './helpers/free-port.ts';
import { spawnTs } from './helpers/processes.ts';
import { killServerAtExit } from './helpers/reap-children.ts';

/** The CLI with this config and no LIS_DATABASE_URL (which would win over the config). */
const lis = async (config: string, ...args: string[]) => {
  const run = spawnTs('bin/lis', ['--config', config, ...args], { LIS_DATABASE_URL: '' });
  const { code } = await run.exited;
  return { code, out: run.output() };
};

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );
const mode = (file: string) => fs.statSync(file).mode & 0o777;

describe('the embedded PostgreSQL: secure defaults', function () {
  this.timeout(180_000);

  it('computes SCRAM verifiers as PostgreSQL does (RFC 7677 test vector)', () => {
    // RFC 7677 5: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    const verifier = scramVerifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096);
    assert.equal(
      verifier,
      'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=',
    );
  });

  it("writes password files 0600, owned by the owner of their folder (the daemons' user) even when root writes them", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-pwfile-'));
    try {
      const folder = path.join(dir, 'var');
      fs.mkdirSync(folder);
      const owner = process.getuid?.() === 0 ? Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })) : process.getuid!();
      if (process.getuid?.() === 0) fs.chownSync(folder, owner, owner);
      const file = passwordFile({ dataDir: path.join(folder, 'pg') }, 'role');
      assert.equal(file, path.join(folder, 'pg.password'));
      writePassword(file, 'first');
      writePassword(file, 'second');
      assert.equal(readPassword(file), 'second');
      assert.equal(mode(file), 0o600);
      assert.equal(fs.statSync(file).uid, owner);
      assert.deepEqual(fs.readdirSync(folder), ['pg.password'], 'no temp file left');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a fresh folder, in a private (0700) checkout: random passwords in 0600 files, a role that is no superuser, tests' databases still made from a template", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-secure-'));
    const checkout = path.join(dir, 'checkout');
    fs.mkdirSync(checkout, { mode: 0o700 });
    fs.chmodSync(checkout, 0o700);
    const dataDir = path.join(checkout, 'var', 'pg');
    const config = path.join(dir, 'config.json');
    // A free port of its own: other checkouts on this machine run servers of their own.
    const port = await freePort();
    fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir, port } } }));
    killServerAtExit(dataDir);
    try {
      const start = await lis(config, 'db', 'start');
      assert.equal(start.code, 0, start.out);
      assert.match(start.out, new RegExp(`embedded PostgreSQL running \\(pid \\d+, port ${port}, data `));
      if (process.getuid?.() === 0) {
        // The server runs as postgres: the private folder was opened to it for passing through only, and stays 0700 for everyone else.
        assert.match(execFileSync('getfacl', ['-p', checkout], { encoding: 'utf8' }), /^user:postgres:--x$/m);
        assert.equal(mode(checkout) & 0o007, 0);
      }
      const roleFile = path.join(checkout, 'var', 'pg.password');
      const superFile = path.join(checkout, 'var', 'pg.superuser-password');
      assert.equal(mode(roleFile), 0o600);
      assert.equal(mode(superFile), 0o600);
      const password = fs.readFileSync(roleFile, 'utf8').trim();
      assert.match(password, /^[A-Za-z0-9_-]{32}$/);

      const url = (await lis(config, 'db', 'url')).out.trim();
      assert.equal(url, `postgres://imagesys:${password}@127.0.0.1:${port}/imagesys`);
      assert.deepEqual(await query(url, 'SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user'), [{ rolsuper: false, rolcreatedb: true }]);
      assert.equal(await codeOf(query(url, `COPY (SELECT 1) TO PROGRAM 'true'`)), '42501', "no COPY TO PROGRAM for the daemons' role");
      assert.equal(await codeOf(query(url.replace(password, 'imagesys'), 'SELECT 1')), '28P01', 'the old fixed password does not work');
      const superUrl = `postgres://postgres:${fs.readFileSync(superFile, 'utf8').trim()}@127.0.0.1:${port}/postgres`;
      assert.deepEqual(await query(superUrl, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user'), [{ rolsuper: true }]);

      // What test/helpers/test-database.ts does, as this role: a migrated template, a copy of it, both dropped.
      const template = await recreateDatabase(url, 'lis_secure_template');
      const db = createDb(template, 1);
      await migrateToLatest(db);
      await db.destroy();
      await query(url.replace(/\/imagesys$/, '/postgres'), 'CREATE DATABASE lis_secure_copy TEMPLATE lis_secure_template');
      assert.deepEqual(await query(url.replace(/\/imagesys$/, '/lis_secure_copy'), `SELECT count(*)::int AS n FROM live_images`), [{ n: 0 }]);
      // A superuser's session on it (after a big bench drain: autovacuum) is not ours to end: FORCE is refused (42501),
      // the plain DROP that follows waits for it, and while a session stays, the error says whose it is.
      const held = new pg.Client({ connectionString: superUrl.replace(/\/postgres$/, '/lis_secure_copy') });
      await held.connect();
      try {
        await assert.rejects(dropDatabase(url, 'lis_secure_copy'), (e: Error & { code?: string }) => {
          assert.equal(e.code, 'ERR_DB_IN_USE');
          assert.match(
            e.message,
            /cannot drop database lis_secure_copy: a session our role may not end \(a superuser's, another role's\) is on it \(database "lis_secure_copy" is being accessed by other users\)/,
          );
          return true;
        });
      } finally {
        await held.end();
      }
      // Such a session leaving while the plain DROP waits (autovacuum, told to stop by it, does), and one of our role's
      // there: ours is ended (FORCE, refused, ended none), the superuser's leaves once it is, and the database is dropped.
      const ours = new pg.Client({ connectionString: url.replace(/\/imagesys$/, '/lis_secure_copy') });
      const passing = new pg.Client({ connectionString: superUrl.replace(/\/postgres$/, '/lis_secure_copy') });
      await ours.connect();
      await passing.connect();
      const oursEnded = new Promise<Error & { code?: string }>((resolve) => ours.on('error', resolve));
      const passed = oursEnded.then(() => passing.end());
      try {
        await dropDatabase(url, 'lis_secure_copy');
        assert.equal((await oursEnded).code, '57P01', 'our session ended by the server');
        await passed;
      } finally {
        await Promise.allSettled([ours.end(), passing.end()]);
      }
      assert.deepEqual(await query(superUrl, `SELECT datname FROM pg_database WHERE datname = 'lis_secure_copy'`), []);
      await dropDatabase(url, 'lis_secure_template');
      assert.deepEqual(await query(superUrl, `SELECT datname FROM pg_database WHERE datname LIKE 'lis_secure_%'`), []);

      const status = await lis(config, 'db', 'status');
      assert.equal(status.code, 0, status.out);
      assert.match(status.out, new RegExp(`running \\(pid \\d+, port ${port}\\)`));
      assert.match(status.out, /^schema: current$/m);
      assert.equal((await lis(config, 'db', 'stop')).code, 0);
      const stopped = await lis(config, 'db', 'status');
      assert.equal(stopped.code, 3, stopped.out);
      assert.match(stopped.out, /embedded PostgreSQL: stopped/);
    } finally {
      await lis(config, 'db', 'stop');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a folder of an older version (superuser imagesys, password imagesys) is upgraded in place: data kept, passwords rotated, the role demoted', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-legacy-'));
    const port = await freePort();
    const settings = parseConfig({ database: { embedded: { dataDir: path.join(dir, 'var', 'pg'), port } } }, {}, dir).database.embedded;
    const config = path.join(dir, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir: settings.dataDir, port } } }));
    killServerAtExit(settings.dataDir);
    const oldUrl = (db: string) => `postgres://imagesys:imagesys@127.0.0.1:${port}/${db}`;
    try {
      await startLegacyFolder(settings);
      await query(oldUrl('postgres'), 'CREATE DATABASE imagesys');
      const db = createDb(oldUrl('imagesys'), 1);
      await migrateToLatest(db);
      await db.destroy();
      await query(oldUrl('imagesys'), `INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, 'http://a.com/b.jpg')`);
      await query(oldUrl('postgres'), 'CREATE DATABASE lis_test_left_over TEMPLATE imagesys');

      const start = await lis(config, 'db', 'start');
      assert.equal(start.code, 0, start.out);
      const url = (await lis(config, 'db', 'url')).out.trim();
      assert.equal(await codeOf(query(oldUrl('imagesys'), 'SELECT 1')), '28P01', 'imagesys/imagesys no longer logs in');
      assert.equal(mode(path.join(dir, 'var', 'pg.password')), 0o600);
      assert.deepEqual(await query(url, 'SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user'), [{ rolsuper: false, rolcreatedb: true }]);
      assert.deepEqual(await query(url, 'SELECT image_url FROM live_images'), [{ image_url: 'http://a.com/b.jpg' }]);
      // It owns what the old superuser made: future migrations can alter the tables and replace the functions.
      await query(url, `INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, 'http://a.com/c.jpg')`);
      await query(url, 'ALTER TABLE live_images ADD COLUMN upgrade_check int');
      await query(
        url,
        `CREATE OR REPLACE FUNCTION lis_hash_for_url(url text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT md5(url) $$`,
      );
      assert.deepEqual(
        await query(url, `SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname IN ('imagesys', 'lis_test_left_over') ORDER BY 1`),
        [
          { datname: 'imagesys', owner: 'imagesys' },
          { datname: 'lis_test_left_over', owner: 'imagesys' },
        ],
      );
      const superUrl = `postgres://postgres:${fs.readFileSync(path.join(dir, 'var', 'pg.superuser-password'), 'utf8').trim()}@127.0.0.1:${port}/postgres`;
      assert.deepEqual(await query(superUrl, `SELECT rolname FROM pg_roles WHERE rolsuper OR rolname LIKE 'lis_upgrade_%' ORDER BY 1`), [
        { rolname: 'postgres' },
      ]);
      assert.equal(await codeOf(query(url, `COPY (SELECT 1) TO PROGRAM 'true'`)), '42501');
      const again = await lis(config, 'db', 'migrate');
      assert.equal(again.code, 0, again.out);
    } finally {
      await lis(config, 'db', 'stop');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a server that cannot be reached is named in the error, without its password', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-noserver-'));
    try {
      const config = path.join(dir, 'config.json');
      const port = await freePort(); // nothing listens there
      fs.writeFileSync(config, JSON.stringify({ database: { url: `postgres://imagesys:s3cret@127.0.0.1:${port}/imagesys` } }));
      for (const args of [
        ['db', 'migrate'],
        ['frontend', 'list'],
      ]) {
        const run = await lis(config, ...args);
        assert.equal(run.code, 1, run.out);
        assert.match(run.out, new RegExp(`cannot connect to the database at 127\\.0\\.0\\.1:${port}/imagesys as imagesys: .*ECONNREFUSED`));
        assert.doesNotMatch(run.out, /s3cret/);
      }
      const status = await lis(config, 'db', 'status');
      assert.equal(status.code, 3);
      assert.match(status.out, new RegExp(`cannot connect to the database at 127\\.0\\.0\\.1:${port}/imagesys`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
