import client from 'prom-client';
import type { Db } from '../db/connect.ts';
import { frontendLag, type FrontendLag } from './frontend-lag.ts';

/** The lag query scans the rows live or in push: read it at most this often, however often Prometheus scrapes. */
const LAG_CACHE_MS = 30_000;

/**
 * lis_frontend_lag_rows{frontend, kind}: rows of this country a frontend
 * lacks (kind `live`: backfill's work; `push`: the next chunks'), and
 * lis_frontend_enabled{frontend} (read apart, from the frontends table). Registered on the pusher's exporter.
 *
 * The lag: one read at a time, shared by both of its kinds and by every scrape
 * that comes while it runs; once a value is known, a scrape after LAG_CACHE_MS gets it at
 * once and starts a fresh read behind it. On a big country the read takes
 * longer than a scrape may (one scan of the country's rows and of the push
 * records: 2.5 s for 200k rows and 3 frontends on a busy 2-core machine, and it
 * was 7 s when it scanned the rows once per frontend): each scrape then started
 * another one, each series its own, and the scans piled up on the
 * database while every scrape reported the read failed.
 */
export function registerFrontendLagMetrics(registry: client.Registry, db: Db, country: string, cacheMs = LAG_CACHE_MS): void {
  let cache: { at: number; lag: FrontendLag[] } | null = null;
  let reading: Promise<FrontendLag[]> | null = null;
  /** The last read's failure (the database away): said by each scrape until a read succeeds, never hidden behind an old value. */
  let failed: Error | null = null;
  const refresh = () =>
    (reading ??= frontendLag(db, { country })
      .then(
        (lag) => {
          cache = { at: performance.now(), lag };
          failed = null;
          return lag;
        },
        (error: Error) => {
          failed = error;
          throw error;
        },
      )
      .finally(() => (reading = null)));
  const read = async (): Promise<FrontendLag[]> => {
    if (!cache) return refresh();
    if (performance.now() - cache.at > cacheMs) refresh().catch(() => {});
    if (failed) throw failed;
    return cache.lag;
  };
  new client.Gauge({
    name: 'lis_frontend_lag_rows',
    help: 'Rows of this country a frontend does not have yet: live (backfill) or in push',
    labelNames: ['frontend', 'kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of await read()) {
        this.set({ frontend: f.frontend, kind: 'live' }, f.live);
        this.set({ frontend: f.frontend, kind: 'push' }, f.push);
      }
    },
  });
  new client.Gauge({
    name: 'lis_frontend_enabled',
    help: '1 when the frontend is enabled, 0 when an operator or the manager disabled it',
    labelNames: ['frontend'],
    registers: [registry],
    async collect() {
      // Its own read of the frontends table (a few rows), not the lag's: on a big country the lag's first read
      // outlasts many scrapes (45 s at 2.5M rows), and which frontends are switched off must be seen at once.
      const frontends = await db.selectFrom('frontends').select(['name', 'enabled']).orderBy('name').execute();
      this.reset();
      for (const f of frontends) this.set({ frontend: f.name }, f.enabled ? 1 : 0);
    },
  });
}
