import pg from 'pg';
import { endClient } from './end-client.ts';
import { LisError } from '../errors.ts';
import { clientUrl } from './client-config.ts';
import { connectionFailure, describeServer } from './connection-failure.ts';
import { isNotAnswering } from './database-error.ts';

/** A probe's outcome: the server answered (with rows or with an error of its own), or it said nothing. */
export type ProbeOutcome = { answered: true } | { answered: false; error: Error };

/**
 * Pure: whether a failed probe still heard the server. An error the server sent (it has a severity: too many
 * connections, starting up, a login refused) is an answer: the server is there. A bound that ran out, a
 * connection refused, reset or unreachable is silence.
 */
export function serverAnswered(error: unknown): boolean {
  return typeof (error as { severity?: unknown })?.severity === 'string';
}

/**
 * Asks the server `SELECT 1` on a connection of its own, made for this and closed after, with the bounds given:
 * it tells a server that is busy (a long statement, a wait on locks: it answers this at once) from one that
 * answers nothing (its process stopped, its host hung, the path lost). Never rejects; the connection never
 * outlives the call (one the server did not close in time is cut).
 */
export async function probeServer(url: string, bounds: { connectMs: number; queryMs: number }): Promise<ProbeOutcome> {
  const client = new pg.Client({
    connectionString: clientUrl(url),
    application_name: 'imagesys:probe',
    connectionTimeoutMillis: bounds.connectMs,
    query_timeout: bounds.queryMs,
  });
  // Its socket's errors are the outcome, read from the calls; without a listener one would crash the process.
  client.on('error', () => {});
  let phase = 'a connect';
  try {
    await client.connect();
    phase = 'SELECT 1';
    await client.query('SELECT 1');
    // A polite end; a server that froze right after answering never says goodbye, and is not waited for.
    await endClient(client, bounds.connectMs);
    return { answered: true };
  } catch (error) {
    client.connection.stream.destroy();
    if (serverAnswered(error)) return { answered: true };
    // pg's bare "timeout expired" / "Query read timeout" said as what went unanswered, and for how long.
    if (isNotAnswering(error)) {
      const ms = phase === 'a connect' ? bounds.connectMs : bounds.queryMs;
      const what = `no answer to ${phase} in ${Math.round(ms / 100) / 10} s`;
      return {
        answered: false,
        error: new LisError('ERR_DATABASE_TIMEOUT', `the database at ${describeServer(url)} is not answering: ${what}`, { cause: error }),
      };
    }
    const named = connectionFailure(url, error) ?? error;
    return { answered: false, error: named instanceof Error ? named : new Error(String(named)) };
  }
}
