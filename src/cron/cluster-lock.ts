import pg from 'pg';
import { sql } from 'kysely';
import { clientUrl } from '../db/client-config.ts';
import type { Db } from '../db/connect.ts';
import { connectionFailure } from '../db/connection-failure.ts';
import type { QueryBounds } from '../db/query-bounds.ts';
import { endClient } from '../db/end-client.ts';
import { withSessionSettings } from '../db/session-settings.ts';
import { errorMessage } from '../errors.ts';
import { isProcessAlive } from '../util/process-alive.ts';

/**
 * First key of the upkeep's advisory locks ('upkp'); the second is the country's hashtext. Both int4, as
 * pg_locks shows them (classid, objid; objsubid 2).
 */
const UPKEEP_LOCK = 0x75706b70;

/**
 * The part of a country's upkeep every host shares, held here (`tookOver`: from the session of a run of this
 * host that is gone, described), or by whom it is held.
 */
export type ClusterPart = { held: true; release: () => Promise<void>; cut: () => void; tookOver?: string } | { held: false; holder: string };

/** Pure: the name the lock's session goes by, which a second host reads to say who holds it (at most 63 bytes kept). */
export function holderName(host: string, pid: number): string {
  return `lis_cron_frontend on ${host} pid ${pid}`;
}

/**
 * Pure: the pid of the run of `host` whose lock session is named `name` (holderName), or null: another host's,
 * another program's, or a name PostgreSQL cut at 63 bytes. Host names are unique (they name the stores' hosts).
 */
export function runPidOn(host: string, name: string): number | null {
  const prefix = `lis_cron_frontend on ${host} pid `;
  if (!name.startsWith(prefix)) return null;
  const pid = name.slice(prefix.length);
  return /^\d+$/.test(pid) ? Number(pid) : null;
}

/** The session holding a country's lock: its backend, its name and since when. */
interface Holder {
  pid: number;
  name: string;
  since: Date | null;
}

/**
 * Takes the country's cluster-wide upkeep (the database scan and purge, the frontends' trees): a session
 * advisory lock on a connection of its own, named for this host and process, so that the server releases it if
 * the process dies (no stale lock to take over) and another host can say who holds it. Never waits: when
 * another run holds it, says who. `onLost` hears of the connection dying meanwhile (the lock went with it).
 * `bounds` bound its connect and its one statement (a try, never a wait): a database that hangs fails it.
 * One exception to "never waits": a session of a run of this host whose process is gone (cut on a path that
 * was lost, the server never heard it close: it keeps the session until its TCP keepalive gives up, hours) is
 * ended, and the lock taken once it went, waiting for that `bounds.connectMs` at most.
 */
export async function takeClusterPart(
  url: string,
  db: Db,
  country: string,
  who: { host: string; pid: number },
  bounds: QueryBounds,
  onLost: (error: Error) => void,
): Promise<ClusterPart> {
  // Our session settings (DateStyle: it reads a holder's backend_start); no statement_timeout: a takeover waits for its lock.
  const client = new (withSessionSettings(pg.Client, { statementTimeoutMs: 0, lockTimeoutMs: 0 }))({
    connectionString: clientUrl(url),
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
  let holder: Holder | null | Error;
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS locked', [UPKEEP_LOCK, country]);
    if (rows[0].locked) return heldPart(client, onLost, bounds.connectMs);
    holder = await holderOf(db, country);
    const gone = holder && !(holder instanceof Error) ? runPidOn(who.host, holder.name) : null;
    if (holder && !(holder instanceof Error) && gone !== null && gone !== who.pid && !isProcessAlive(gone)) {
      if (await takeOver(client, holder.pid, country, bounds.connectMs)) return heldPart(client, onLost, bounds.connectMs, describeHolder(holder));
      holder = await holderOf(db, country);
    }
  } catch (error) {
    // Cut, not ended: an end() waits for the server's goodbye, which a hung one never sends.
    client.connection.stream.destroy();
    throw named(error);
  }
  await endClient(client, bounds.connectMs);
  return {
    held: false,
    holder:
      holder instanceof Error
        ? `another run (who could not be read: ${errorMessage(holder)})`
        : holder
          ? describeHolder(holder)
          : 'another run (just finished)',
  };
}

/** The lock held on `client`'s session: released by ending it, within `endWaitMs` (endClient). */
function heldPart(client: pg.Client, onLost: (error: Error) => void, endWaitMs: number, tookOver?: string): ClusterPart {
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
  return { held: true, release: () => (released ??= endClient(client, endWaitMs)), cut, ...(tookOver ? { tookOver } : {}) };
}

/**
 * Ends the lock's session `backend` (a gone run's) and takes the lock once it went, waiting `waitMs` at most.
 * False when the server would not let us end it (42501) or another run took the lock first (55P03).
 */
async function takeOver(client: pg.Client, backend: number, country: string, waitMs: number): Promise<boolean> {
  try {
    await client.query('SELECT pg_terminate_backend($1)', [backend]);
    await client.query(`SET lock_timeout = ${Math.max(1, Math.round(waitMs))}`);
    await client.query('SELECT pg_advisory_lock($1::int, hashtext($2))', [UPKEEP_LOCK, country]);
    await client.query('RESET lock_timeout');
    return true;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === '42501' || code === '55P03') return false;
    throw error;
  }
}

/** Pure: a holder as the log names it. */
function describeHolder(h: Holder): string {
  return `${h.name || 'a session without a name'} (since ${h.since ? h.since.toISOString() : 'a time not shown to us'})`;
}

/** Who holds the country's lock (null: nobody now), as its session is named, and since when; read right after a try failed. */
async function holderOf(db: Db, country: string): Promise<Holder | null | Error> {
  try {
    const { rows } = await sql<Holder>`
      SELECT a.pid, a.application_name AS name, a.backend_start AS since FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid = ${UPKEEP_LOCK}::int::oid AND l.objid = hashtext(${country})::oid AND l.objsubid = 2`.execute(db);
    return rows[0] ?? null;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
