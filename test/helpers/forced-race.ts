import { sql, type RawBuilder } from 'kysely';
import { createDb, type Db } from '../../src/db/connect.ts';
import { waitFor } from './processes.ts';

/**
 * Runs `start` (two or more runs at once, e.g. two managers) while a transaction of our own holds `lock`, and
 * lets them go on only once `sessions` sessions of database `name` wait for a lock: each has read what it reads
 * before it writes, so none can have seen the others' writes. A race forced, not hoped for.
 */
export async function raceWhileHeld<T>(
  t: { db: Db; url: string; name: string },
  lock: RawBuilder<unknown>,
  start: () => Promise<T>,
  sessions: number,
  what: string,
): Promise<T> {
  const holder = createDb(t.url, 1);
  try {
    const both = await holder.transaction().execute(async (trx) => {
      await lock.execute(trx);
      const runs = start();
      // Not left unhandled while we wait: its outcome is awaited below.
      runs.catch(() => {});
      await waitFor(
        async () => {
          const { rows } = await sql`SELECT 1 FROM pg_stat_activity WHERE datname = ${t.name} AND wait_event_type = 'Lock'`.execute(t.db);
          return rows.length === sessions;
        },
        20_000,
        what,
      );
      // Wrapped: a promise returned as such would be awaited before the commit that lets the runs go on.
      return { runs };
    });
    return await both.runs;
  } finally {
    await holder.destroy();
  }
}
