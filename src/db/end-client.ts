import type pg from 'pg';
import { settledWithin } from '../util/settled-within.ts';

/**
 * How long a close waits for the server to close a session when its caller has no connect bound to wait by
 * (database.connectTimeoutSeconds' default): a healthy server closes within milliseconds.
 */
export const GOODBYE_WAIT_MS = 10_000;

/**
 * Ends a client's session politely, waiting at most `waitMs` for the server to close its side, then cuts
 * whatever of the socket is left (nothing, after a clean end; an end that failed may leave it open). pg's end()
 * resolves only once the server has closed the connection: a server that is stopped, or whose host hung, never
 * does, and the open socket kept the process alive (and the caller waiting) until it ran again. A session lock
 * (the upkeep's) goes when the server reads either the goodbye or the close.
 */
export async function endClient(client: pg.Client, waitMs: number): Promise<void> {
  await settledWithin(client.end(), waitMs);
  client.connection.stream.destroy();
}
