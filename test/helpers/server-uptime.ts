import { sql } from 'kysely';
import type { Db } from '../../src/db/connect.ts';
import { waitFor } from './processes.ts';

/**
 * Waits until the database server has been up for over `seconds`. stuck_jobs counts a worker's silence
 * from the server's start at the earliest (nobody can beat while it is down: releaseStuckJobs), so a test
 * that fakes a heartbeat or progress an hour old is judged by the server's uptime instead, which is short
 * on a server the run has just started, or that the chaos test has just restarted.
 */
export async function serverUpFor(db: Db, seconds: number): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await sql<{ up: number }>`SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS up`.execute(db);
      return rows[0].up > seconds;
    },
    (seconds + 30) * 1000,
    `the database server up for over ${seconds} s`,
  );
}
