import crypto from 'node:crypto';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError, errorMessage } from '../errors.ts';
import { passwordFile, randomPassword, readPassword, scramVerifier, SUPERUSER, writePassword } from './embedded-credentials.ts';

type EmbeddedSettings = LisConfig['database']['embedded'];

/** What the daemons' role may do: log in, and create databases (the tests' per-test copies); nothing a superuser may. */
const ROLE_OPTIONS = 'LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS';
/** Temporary superusers of an upgrade are named so; one left by a crash is dropped by the next start. */
const UPGRADE_ROLE_PREFIX = 'lis_upgrade_';

async function withClient<T>(settings: EmbeddedSettings, user: string, password: string, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: '127.0.0.1', port: settings.port, user, password, database });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const isLoginFailure = (error: unknown) => ['28P01', '28000'].includes((error as { code?: string }).code ?? '');

/**
 * Makes sure the daemons' role exists, is no superuser, owns its databases
 * and what is in them, and has the password of its file. Fast when done
 * (the role's password file is written last, as the mark of it). A data
 * folder of an older version (no password files: its only role was the
 * superuser `imagesys`, password `imagesys`) is upgraded first.
 */
export async function ensureDaemonRole(settings: EmbeddedSettings): Promise<void> {
  if (readPassword(passwordFile(settings, 'role'))) return;
  const superuserPassword = readPassword(passwordFile(settings, 'superuser'));
  if (superuserPassword) {
    try {
      await finishRole(settings, superuserPassword);
      return;
    } catch (error) {
      // The superuser's file was written but an upgrade stopped before its commit: start the upgrade again.
      if (!isLoginFailure(error)) throw error;
    }
  }
  await upgradeLegacyFolder(settings);
}

/** Sets the role's password (and options), moves ownership to it, drops leftovers, then writes its password file. */
async function finishRole(settings: EmbeddedSettings, superuserPassword: string): Promise<void> {
  const password = randomPassword();
  const databases = await withClient(settings, SUPERUSER, superuserPassword, 'postgres', async (c) => {
    const exists = (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [settings.user])).rowCount;
    await c.query(
      `${exists ? 'ALTER' : 'CREATE'} ROLE ${c.escapeIdentifier(settings.user)} WITH ${ROLE_OPTIONS} PASSWORD ${c.escapeLiteral(scramVerifier(password))}`,
    );
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('postgres', 'template1') AND datdba IN (SELECT oid FROM pg_roles WHERE rolname IN ($1, $2))`,
      [SUPERUSER, settings.user],
    );
    for (const { datname } of rows) await c.query(`ALTER DATABASE ${c.escapeIdentifier(datname)} OWNER TO ${c.escapeIdentifier(settings.user)}`);
    return rows.map((r) => r.datname);
  });
  for (const database of databases) {
    await withClient(settings, SUPERUSER, superuserPassword, database, (c) => reassignObjects(c, settings.user));
  }
  await withClient(settings, SUPERUSER, superuserPassword, 'postgres', async (c) => {
    const { rows } = await c.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, [UPGRADE_ROLE_PREFIX]);
    for (const { rolname } of rows) await c.query(`DROP ROLE ${c.escapeIdentifier(rolname)}`);
  });
  writePassword(passwordFile(settings, 'role'), password);
}

/**
 * Gives `owner` what the superuser owns in the connected database outside the
 * system schemas: schemas, tables (their indexes, triggers and column
 * sequences follow), views, sequences, functions and types. REASSIGN OWNED
 * cannot: the superuser of an upgraded folder is the bootstrap one, whose
 * objects PostgreSQL refuses to reassign wholesale.
 */
async function reassignObjects(c: pg.Client, owner: string): Promise<void> {
  const to = c.escapeIdentifier(owner);
  const userSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`;
  const superuser = `(SELECT oid FROM pg_roles WHERE rolname = '${SUPERUSER}')`;
  await c.query('BEGIN');
  try {
    const statements = async (query: string) => (await c.query<{ sql: string }>(query)).rows.map((r) => r.sql);
    const run = async (list: string[]) => {
      for (const statement of list) await c.query(statement);
    };
    await run(
      await statements(`SELECT format('ALTER SCHEMA %I OWNER TO ${to}', nspname) AS sql FROM pg_namespace n WHERE nspowner = ${superuser} AND ${userSchemas}`),
    );
    await run(
      await statements(`SELECT format('ALTER TABLE %s OWNER TO ${to}', c.oid::regclass) AS sql FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE c.relowner = ${superuser} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ${userSchemas}`),
    );
    // Sequences not tied to a column (those moved with their table).
    await run(
      await statements(`SELECT format('ALTER SEQUENCE %s OWNER TO ${to}', c.oid::regclass) AS sql FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE c.relowner = ${superuser} AND c.relkind = 'S' AND ${userSchemas}`),
    );
    await run(
      await statements(`SELECT format('ALTER ROUTINE %s OWNER TO ${to}', p.oid::regprocedure) AS sql FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                                 WHERE p.proowner = ${superuser} AND ${userSchemas}`),
    );
    // Stand-alone types only: a table's row type and an array type follow their owner.
    await run(
      await statements(`SELECT format('ALTER %s %s OWNER TO ${to}', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype) AS sql
                                  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                                 WHERE t.typowner = ${superuser} AND t.typrelid = 0 AND t.typtype IN ('b', 'c', 'd', 'e', 'r')
                                   AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid) AND ${userSchemas}`),
    );
    await c.query('COMMIT');
  } catch (error) {
    await c.query('ROLLBACK');
    throw error;
  }
}

/**
 * A data folder made by an older version: the daemons logged in as its
 * bootstrap superuser (`database.embedded.user`, password
 * `database.embedded.password`, by default `imagesys`/`imagesys`). In one
 * transaction, run by a temporary superuser (a session cannot rename its own
 * role): that superuser becomes `postgres` with a random password, and a new
 * `imagesys` role, no superuser, gets another and the databases. Then
 * ownership of what is in them moves over (finishRole).
 */
async function upgradeLegacyFolder(settings: EmbeddedSettings): Promise<void> {
  const legacyUser = settings.user;
  const temp = { user: `${UPGRADE_ROLE_PREFIX}${crypto.randomBytes(4).toString('hex')}`, password: randomPassword() };
  try {
    await withClient(settings, legacyUser, settings.password, 'postgres', async (c) => {
      const me = await c.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
      if (!me.rows[0]?.rolsuper) throw new LisError('ERR_EMBEDDED_PG', `"${legacyUser}" is not a superuser there, yet there is no password file`);
      if ((await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [SUPERUSER])).rowCount) {
        throw new LisError('ERR_EMBEDDED_PG', `a role "${SUPERUSER}" exists already, so "${legacyUser}" cannot be renamed to it`);
      }
      await c.query(`CREATE ROLE ${c.escapeIdentifier(temp.user)} WITH SUPERUSER LOGIN PASSWORD ${c.escapeLiteral(scramVerifier(temp.password))}`);
    });
  } catch (error) {
    throw new LisError(
      'ERR_EMBEDDED_PG',
      `the embedded PostgreSQL in ${settings.dataDir} has no password files (${passwordFile(settings, 'role')}), so it was set up by an older version, ` +
        `whose superuser "${legacyUser}" had the password in database.embedded.password; upgrading it failed: ${errorMessage(error)}. ` +
        `Set database.embedded.password to that superuser's password and run \`npx lis db start\` again; or, if its data may go, ` +
        `\`npx lis db stop\` and remove ${settings.dataDir} to start afresh`,
      { cause: error },
    );
  }
  const superuserPassword = randomPassword();
  // Written before the commit: after it, this is the only way in.
  writePassword(passwordFile(settings, 'superuser'), superuserPassword);
  await withClient(settings, temp.user, temp.password, 'postgres', async (c) => {
    await c.query('BEGIN');
    try {
      await c.query(`ALTER ROLE ${c.escapeIdentifier(legacyUser)} RENAME TO ${SUPERUSER}`);
      await c.query(`ALTER ROLE ${SUPERUSER} WITH PASSWORD ${c.escapeLiteral(scramVerifier(superuserPassword))}`);
      await c.query(`CREATE ROLE ${c.escapeIdentifier(settings.user)} WITH ${ROLE_OPTIONS}`);
      await c.query('COMMIT');
    } catch (error) {
      await c.query('ROLLBACK');
      throw error;
    }
  });
  await finishRole(settings, superuserPassword);
}
