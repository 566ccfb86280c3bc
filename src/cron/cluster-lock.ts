import pg from 'pg';
import { sql } from 'kysely';
import { connectionFailure, type Db, type QueryBounds } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';

/**
 * First key of the upkeep's advisory locks ('upkp'); the second is the country's hashtext. Both int4, as
 * pg_locks shows them (classid, objid; objsubid 2).
 */
const UPKEEP_LOCK = 0x75706b70;

/** The part of a country's upkeep every host shares, held here, or by whom it is held. */
export type ClusterPart = { held: true; release: () => Promise<void>; cut: () => void } | { held: false; holder: string };

/** Pure: the name the lock's session goes by, which a second host reads to say who holds it (at most 63 bytes kept). */
export function holderName(host: string, pid: number): string {
  return `lis_cron_frontend on ${host} pid ${pid}`;
}

/**
 * Takes the country's cluster-wide upkeep (the database scan and purge, the frontends' trees): a session
 * advisory lock on a connection of its own, named for this host and process, so that the server releases it if
 * the process dies (no stale lock to take over) and another host can say who holds it. Never waits: when
 * another run holds it, says who. `onLost` hears of the connection dying meanwhile (the lock went with it).
 * `bounds` bound its connect and its one statement (a try, never a wait): a database that hangs fails it.
 */
export async function takeClusterPart(
  url: string,
  db: Db,
  country: string,
  who: { host: string; pid: number },
  bounds: QueryBounds,
  onLost: (error: Error) => void,
): Promise<ClusterPart> {
  const client = new pg.Client({
    connectionString: url,
    application_name: holderName(who.host, who.pid),
    connectionTimeoutMillis: bounds.connectMs,
    query_timeout: bounds.queryMs,
  });
  client.on('error', onLost);
  // pg's bare "timeout expired" / "Query read timeout" said as ERR_DATABASE_TIMEOUT naming the server.
  const named = (error: unknown) => connectionFailure(url, error) ?? error;
  await client.connect().catch((error: unknown) => {
    throw named(error);
  });
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS locked', [UPKEEP_LOCK, country]);
    if (rows[0].locked) {
      let released: Promise<void> | null = null;
      // Ending the session releases the lock; an error then means the connection is gone, and the lock with it.
      // cut() for a server that does not answer: its socket closed at once, as an end() would wait for ever for
      // the goodbye. The server drops the session, and the lock, once it reads that close: a stopped process as
      // soon as it runs again, a host that hung once it is back (or its TCP keepalive gives up on us).
      const cut = () => {
        released ??= Promise.resolve();
        // Our own close, not a lost connection: not told as one.
        client.removeListener('error', onLost).on('error', () => {});
        client.connection.stream.destroy();
      };
      return { held: true, release: () => (released ??= client.end().catch(() => {})), cut };
    }
  } catch (error) {
    // Cut, not ended: an end() waits for the server's goodbye, which a hung one never sends.
    client.connection.stream.destroy();
    throw named(error);
  }
  await client.end().catch(() => {});
  return { held: false, holder: await holderOf(db, country) };
}

/** Who holds the country's lock, as its session is named, and since when; read right after a try failed. */
async function holderOf(db: Db, country: string): Promise<string> {
  try {
    const { rows } = await sql<{ name: string; since: Date | null }>`
      SELECT a.application_name AS name, a.backend_start AS since FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid = ${UPKEEP_LOCK}::int::oid AND l.objid = hashtext(${country})::oid AND l.objsubid = 2`.execute(db);
    if (rows.length === 0) return 'another run (just finished)';
    const { name, since } = rows[0];
    return `${name || 'a session without a name'} (since ${since ? since.toISOString() : 'a time not shown to us'})`;
  } catch (error) {
    return `another run (who could not be read: ${errorMessage(error)})`;
  }
}
