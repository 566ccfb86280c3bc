import pg from 'pg';
import { LisError } from '../errors.ts';
import { clientUrl } from './client-config.ts';
import { describeServer } from './connection-failure.ts';

/** Drops and creates database `name` on the server of `serverUrl`; returns its URL. For benchmarks, the demo, tests. */
export async function recreateDatabase(serverUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new LisError('ERR_USAGE', `not a plain database name: ${JSON.stringify(name)}`);
  await dropDatabase(serverUrl, name);
  await onServer(serverUrl, (client) =>
    client.query(`CREATE DATABASE ${name}`).catch((error: Error & { code?: string }) => {
      if (error.code !== '42501') throw error;
      throw new LisError('ERR_DB_CREATE', `cannot create database ${name} at ${describeServer(serverUrl)}: ${error.message} (the role needs CREATEDB)`, {
        cause: error,
      });
    }),
  );
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Drops database `name`, ending its sessions (FORCE). A database of another role's is refused, saying so. A session of a superuser's on it cannot be ended by
 * our role (42501), and FORCE then ends none: after a bench's big drain that is autovacuum working on the database (also on a tiny
 * one, now and then: a test run's drop met it). The sessions our role may end are ended, and a plain DROP DATABASE follows, which
 * stops autovacuum itself and waits up to 5 s for the sessions to go; it fails with a clear message when someone's session stays.
 */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, (client) => dropDatabaseOn(client, name, serverUrl));
}

/** {@link dropDatabase} on a session of the server's already open (`serverUrl` names the server in errors). */
export async function dropDatabaseOn(client: pg.ClientBase, name: string, serverUrl: string): Promise<void> {
  const database = client.escapeIdentifier(name);
  try {
    await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    return;
  } catch (caught) {
    const error = caught as Error & { code?: string };
    if (error.code !== '42501') throw error;
    // Not its owner (a database another role made, on a server of the operator's): no session is to blame, and none is ended.
    if (/must be owner/.test(error.message))
      throw new LisError(
        'ERR_DB_NOT_OWNER',
        `cannot drop database ${name} at ${describeServer(serverUrl)}: ${error.message}; drop it as its owner, or use another database name`,
        { cause: error },
      );
  }
  // Those of roles whose privileges ours has (pg_terminate_backend's own rule): not a superuser's, nor autovacuum's (no role, NULL).
  await client.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND pg_has_role(usesysid, 'USAGE')`,
    [name],
  );
  await client.query(`DROP DATABASE IF EXISTS ${database}`).catch((again: Error) => {
    throw new LisError(
      'ERR_DB_IN_USE',
      `cannot drop database ${name}: a session our role may not end (a superuser's, another role's) is on it (${again.message})`,
      {
        cause: again,
      },
    );
  });
}

async function onServer(serverUrl: string, fn: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const admin = new URL(serverUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: clientUrl(admin.toString()) });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}
