import { sql } from 'kysely';
import client from 'prom-client';
import type { Db } from '../db/connect.ts';

/** Read at most this often, however often Prometheus scrapes. */
const CACHE_MS = 30_000;

/**
 * What the manager did in the last 24 hours, from manager_events (so that
 * every manager on every host shows the same, and a restart loses nothing):
 * lis_manager_events_last_day{check, country} and
 * lis_manager_event_rows_last_day{check, country}. Registered on the manager's exporter.
 */
export function registerManagerEventMetrics(registry: client.Registry, db: Db): void {
  let cache: { at: number; rows: Array<{ check_name: string; country: string | null; events: string; rows: string }> } | null = null;
  const read = async () => {
    if (!cache || performance.now() - cache.at > CACHE_MS) {
      const { rows } = await sql<{ check_name: string; country: string | null; events: string; rows: string }>`
        SELECT check_name, country, count(*) AS events, coalesce(sum(rows), 0) AS rows
          FROM manager_events WHERE at > now() - interval '1 day' GROUP BY 1, 2`.execute(db);
      cache = { at: performance.now(), rows };
    }
    return cache.rows;
  };
  new client.Gauge({
    name: 'lis_manager_events_last_day',
    help: 'Manager actions in the last 24 hours (released workers, parked retries, disabled datasources ...), by check',
    labelNames: ['check', 'event_country'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await read()) this.set({ check: r.check_name, event_country: r.country ?? 'all' }, Number(r.events));
    },
  });
  new client.Gauge({
    name: 'lis_manager_event_rows_last_day',
    help: 'Rows the manager acted on in the last 24 hours, by check',
    labelNames: ['check', 'event_country'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await read()) this.set({ check: r.check_name, event_country: r.country ?? 'all' }, Number(r.rows));
    },
  });
}
