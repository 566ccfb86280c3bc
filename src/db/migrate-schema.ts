import path from 'node:path';
import { promises as fs } from 'node:fs';
import { FileMigrationProvider, Migrator, sql, type MigrationResult } from 'kysely';
import { LisError, errorMessage } from '../errors.ts';
import { closeDb, createDb, madeWith, type Db } from './connect.ts';
import { connectionFailure } from './connection-failure.ts';
import { GOODBYE_WAIT_MS } from './end-client.ts';
import { maskUrlPasswords } from '../util/mask-url-password.ts';
import { MIGRATIONS_DIR, refuseMixedSchema, schemaStatus, type SchemaStatus } from './schema-version.ts';

export function migrator(db: Db): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
    // Migrations written on parallel branches land in any order; each is applied once all the same.
    allowUnorderedMigrations: true,
  });
}

/**
 * How long a migration waits for a table's lock (SQLSTATE 55P03 after). An ALTER TABLE waiting for a session that
 * holds its table (a psql left idle in a transaction, a long scan) makes every later statement on that table wait
 * behind it: the daemons' heartbeats and pushes stood still until the session ended, with no word from the migration.
 */
export const MIGRATION_LOCK_WAIT_MS = 10_000;

/**
 * The sessions of this database in a transaction for over `ms`: who may hold the lock a migration gave up on. A
 * session of another role shows no transaction start, state or query to a role without pg_read_all_stats (the
 * daemons' role, when a role of its own migrates): such a session holding a lock on a table here (pg_locks shows
 * every session's) is named all the same, with its role and program, rather than "none now".
 */
async function longTransactions(db: Db, ms: number): Promise<string> {
  const { rows } = await sql<{ pid: number; role: string; app: string; state: string | null; secs: number | null; query: string | null }>`
    SELECT a.pid, coalesce(a.usename::text, '?') AS role, coalesce(nullif(a.application_name, ''), '?') AS app, a.state,
           extract(epoch FROM now() - a.xact_start)::int AS secs, left(a.query, 80) AS query
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
       AND (a.xact_start < now() - make_interval(secs => ${ms / 1000}::float8)
            OR (a.xact_start IS NULL AND a.state IS NULL
                AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                             WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted AND d.datname = current_database())))
     ORDER BY a.xact_start NULLS LAST LIMIT 5`.execute(db);
  return rows.length
    ? rows
        .map((r) =>
          r.secs === null
            ? `pid ${r.pid} (${r.app}, role ${r.role}, holding locks here; its state and query are hidden from this role: a superuser or a member of pg_read_all_stats sees them)`
            : `pid ${r.pid} (${r.app}, ${r.state} for ${r.secs}s: ${r.query})`,
        )
        .join('; ')
    : 'none now (it has ended: run it again)';
}

/**
 * What to do when a migration is refused a privilege (42501): migrations create and alter tables, functions and
 * triggers, which only the schema's owner (or a role with CREATE on it, owning the tables) may do; the daemons need
 * far less (README, "An external PostgreSQL").
 */
function migrationPrivilegeHint(url: string | undefined): string {
  let role = 'this role';
  try {
    if (url) role = `the role ${decodeURIComponent(new URL(url).username) || '(default)'}`;
  } catch {
    // not a URL: said generically
  }
  return (
    `${role} may not create or change the tables: run \`lis db migrate\` with a URL whose role owns the schema (or has CREATE on it ` +
    'and owns the tables), then run the daemons with their own role, granted SELECT, INSERT, UPDATE, DELETE on the tables'
  );
}

/**
 * Brings the schema up to date. Kysely's Migrator holds an advisory lock, so
 * two processes running this at once is safe: the second finds nothing to do.
 */
export async function migrateToLatest(db: Db, lockWaitMs = MIGRATION_LOCK_WAIT_MS): Promise<MigrationResult[]> {
  const { url, connectMs } = madeWith(db);
  // A newer release may have migrated it (a rolling upgrade: its hosts first, then ours): that schema counts as
  // current here too (assertSchemaCurrent), and Kysely, finding applied migrations it does not know, would call
  // them "corrupted" and refuse every command and (embedded) daemon start of this release.
  let status: SchemaStatus;
  try {
    status = await schemaStatus(db);
  } catch (error) {
    throw (url ? connectionFailure(url, error) : null) ?? error;
  }
  refuseMixedSchema(status, url ? maskUrlPasswords(url) : 'the database');
  if (status.unknown.length > 0 || status.missing.length === 0) return [];
  // On a connection of its own whose lock waits are bounded (the Migrator runs every pending migration on one).
  const migrating = url ? createDb(url, 1, undefined, { connectMs: connectMs ?? 0, lockTimeoutMs: lockWaitMs }) : db;
  let run: Awaited<ReturnType<Migrator['migrateToLatest']>>;
  try {
    run = await migrator(migrating).migrateToLatest();
  } finally {
    // Bounded: a server that froze once the migration had committed never closes the session, and the command
    // waited for that for ever, without a word of what it had applied.
    if (migrating !== db) await closeDb(migrating, connectMs || GOODBYE_WAIT_MS);
  }
  const { error, results } = run;
  if (error) {
    const unreachable = url ? connectionFailure(url, error) : null;
    if (unreachable) throw unreachable;
    const failed = results?.find((r) => r.status === 'Error');
    if ((error as { code?: unknown }).code === '55P03')
      throw new LisError(
        'ERR_MIGRATION_LOCKED',
        `migration ${failed?.migrationName ?? '?'} waited ${lockWaitMs / 1000}s for a lock on a table another session holds, and gave up ` +
          `rather than hold up the daemons' statements on that table behind it; nothing was applied. Sessions in a transaction ` +
          `for longer: ${await longTransactions(db, lockWaitMs).catch(() => 'unknown')}. End or wait for that session, then run \`lis db migrate\` again`,
        { cause: error },
      );
    // All pending migrations run in one transaction (PostgreSQL's DDL is transactional): a failure undoes them all.
    const undone = `; nothing was applied (the ${status.missing.length} pending migration(s) run in one transaction), the schema is as it was`;
    const code = (error as { code?: unknown }).code;
    const hint =
      code === '42501'
        ? ` (${migrationPrivilegeHint(url)})`
        : code === '3F000'
          ? " (the role's search_path names no schema that exists: create it, or set the role's search_path to one, ALTER ROLE ... SET search_path; the daemons' role needs the same search_path)"
          : '';
    const why = `${errorMessage(error)}${hint}`;
    throw new LisError('ERR_MIGRATION', failed ? `migration ${failed.migrationName} failed: ${why}${undone}` : `cannot bring the schema up to date: ${why}`, {
      cause: error,
    });
  }
  return results ?? [];
}

/** The migrations not yet applied, by name. Throws when the database cannot be reached. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const migrations = await migrator(db).getMigrations();
  return migrations.filter((m) => m.executedAt === undefined).map((m) => m.name);
}
