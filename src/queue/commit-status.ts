import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';

/**
 * What became of a transaction, by its id (pg_current_xact_id() taken inside it): `committed`, `aborted`,
 * `in progress` (its COMMIT not yet done, or its session still open), or null when the server no longer
 * knows (an id older than the commit log it keeps).
 */
export type CommitStatus = 'committed' | 'aborted' | 'in progress' | null;

/** Asks the server what became of transaction `xid` (pg_xact_status): a read, no row changes. */
export async function commitStatus(db: Db, xid: string): Promise<CommitStatus> {
  const { rows } = await sql<{ status: CommitStatus }>`SELECT pg_xact_status(${xid}::xid8) AS status`.execute(db);
  return rows[0].status;
}
