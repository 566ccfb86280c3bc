import client from 'prom-client';
import type { Db } from '../db/connect.ts';
import { frontendLag, type FrontendLag } from './frontend-lag.ts';

/** The lag query scans the rows live or in push: read it at most this often, however often Prometheus scrapes. */
const LAG_CACHE_MS = 30_000;

/**
 * lis_frontend_lag_rows{frontend, kind}: rows of this country a frontend
 * lacks (kind `live`: backfill's work; `push`: the next chunks'), and
 * lis_frontend_enabled{frontend}. Registered on the pusher's exporter.
 */
export function registerFrontendLagMetrics(registry: client.Registry, db: Db, country: string): void {
  let cache: { at: number; lag: FrontendLag[] } | null = null;
  const read = async () => {
    if (!cache || Date.now() - cache.at > LAG_CACHE_MS) cache = { at: Date.now(), lag: await frontendLag(db, { country }) };
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
      this.reset();
      for (const f of await read()) this.set({ frontend: f.frontend }, f.enabled ? 1 : 0);
    },
  });
}
