import fs from 'node:fs';
import { sql, type Kysely } from 'kysely';
import { LisError } from '../errors.ts';
import type { Database } from './schema.ts';
import { runtimePath } from '../util/package-root.ts';

/** The migrations this code knows: `migrations/*.ts` through tsx, the compiled `dist/migrations/*.js` when built. */
export const MIGRATIONS_DIR = runtimePath('migrations');

/** Names as Kysely records them in kysely_migration: the file name without its extension. */
export function knownMigrations(dir = MIGRATIONS_DIR): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /\.(ts|js|mjs)$/.test(f) && !/\.d\.[mc]?ts$/.test(f))
    .map((f) => f.replace(/\.(ts|js|mjs)$/, ''))
    .sort();
}

export interface SchemaStatus {
  /** Every known migration has been applied. */
  current: boolean;
  /** The newest migration applied (by name), or null on an empty database. */
  lastApplied: string | null;
  /** The newest migration this code knows. */
  newestKnown: string;
  /** Known but not applied, oldest first. */
  missing: string[];
  /** Applied but not known here, oldest first: a newer release migrated the database (a rolling upgrade's older hosts). */
  unknown: string[];
}

/** Pure: how the applied migrations compare with the known ones (a database ahead of the code is current). */
export function compareMigrations(known: string[], applied: string[]): SchemaStatus {
  const done = new Set(applied);
  const missing = known.filter((name) => !done.has(name));
  const sorted = [...applied].sort();
  const ours = new Set(known);
  const unknown = sorted.filter((name) => !ours.has(name));
  return { current: missing.length === 0, lastApplied: sorted.at(-1) ?? null, newestKnown: known.at(-1) ?? '', missing, unknown };
}

/** Reads kysely_migration (absent on a database never migrated) and compares it with the known migrations. */
export async function schemaStatus(db: Kysely<Database>): Promise<SchemaStatus> {
  const { rows: table } = await sql<{ present: boolean }>`SELECT to_regclass('kysely_migration') IS NOT NULL AS present`.execute(db);
  const applied = table[0].present ? (await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(db)).rows.map((r) => r.name) : [];
  return compareMigrations(knownMigrations(), applied);
}

/** Throws ERR_SCHEMA_BEHIND, saying what to run, unless every known migration has been applied. */
export async function assertSchemaCurrent(db: Kysely<Database>, where: string): Promise<void> {
  const status = await schemaStatus(db);
  if (status.current) return;
  throw new LisError(
    'ERR_SCHEMA_BEHIND',
    `the schema of ${where} is behind this code: ${status.missing.length} migration(s) not applied ` +
      `(last applied ${status.lastApplied ?? 'none'}, newest known ${status.newestKnown}); run \`lis db migrate\` (with the same --config) once, then start again`,
  );
}

/** What `lis db migrate` and `lis db status` say of a schema a newer release migrated (null when it is not ahead). */
export function aheadNote(status: SchemaStatus): string | null {
  if (status.unknown.length === 0) return null;
  return (
    `schema is ahead of this code: ${status.unknown.length} migration(s) of a newer release applied (newest ${status.unknown.at(-1)}), ` +
    `none of this code's missing; this code runs on it (a rolling upgrade's hosts not yet upgraded)`
  );
}

/**
 * Throws ERR_SCHEMA_MIXED when the database holds migrations this code does not know (a newer release's, or another
 * branch's) and lacks some of its own: applying ours on top of a schema we do not know could undo or break the other's,
 * and Kysely would refuse anyway, calling the migrations "corrupted".
 */
export function refuseMixedSchema(status: SchemaStatus, where: string): void {
  if (status.unknown.length === 0 || status.missing.length === 0) return;
  throw new LisError(
    'ERR_SCHEMA_MIXED',
    `the schema of ${where} was migrated by other code: ${status.unknown.length} migration(s) applied that this code does not know ` +
      `(${status.unknown.join(', ')}), and ${status.missing.length} of its own not applied (${status.missing.join(', ')}). ` +
      `Nothing was applied. Run \`lis db migrate\` of the release that knows them all (the newest), or this release's daemons on a database of their own`,
  );
}
