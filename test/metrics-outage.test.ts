import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/connect.ts';
import { startPrometheusExporter } from '../src/daemon/prometheus-exporter.ts';
import { registerFrontendLagMetrics } from '../src/push/frontend-lag-metrics.ts';
import { startDatabaseProxy, type DatabaseProxy } from './helpers/database-proxy.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe("a daemon's /metrics while PostgreSQL is away", () => {
  let t: TestDatabase;
  let relay: DatabaseProxy;
  let db: Db;
  let exporter: Awaited<ReturnType<typeof startPrometheusExporter>>;

  beforeEach(async () => {
    t = await createTestDatabase();
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state) VALUES ('uk', 16, 'http://feed.example.com/1.jpg', 'push', 'waiting')`.execute(
      t.db,
    );
    relay = await startDatabaseProxy(t.url);
    db = createDb(relay.url, 4);
    exporter = await startPrometheusExporter({
      db,
      component: 'pusherd',
      country: 'uk',
      host: '127.0.0.1',
      port: 0,
      extra: (registry) => registerFrontendLagMetrics(registry, db, 'uk'),
      // A read the database does not answer is given up after this (5 s in the daemons): the hang case waits it out.
      scrapeDeadlineMs: 1_000,
    });
    exporter.observer.onHeartbeat();
    const failure = { id: '1', attempts: 0, reason: 'database away', errorClass: 'database', retryable: true };
    exporter.observer.onResult('push', { ok: false, failure }, 0.1, 'ours');
  });
  afterEach(async () => {
    await exporter.close();
    await relay.cut();
    await db.destroy();
    await t.drop();
  });

  // Prometheus gives up on a scrape after scrape_timeout, 10 s by default.
  const scrape = () => fetch(exporter.url, { signal: AbortSignal.timeout(10_000) });

  for (const outage of ['cut', 'hang'] as const) {
    it(`still serves the daemon's own series, and says what it could not read (database ${outage === 'cut' ? 'refusing' : 'not answering'})`, async function () {
      this.timeout(30_000);
      // Connections open through the relay, as a running daemon has them; nothing read yet, so nothing cached.
      await sql`SELECT 1`.execute(db);
      if (outage === 'cut') await relay.cut();
      else relay.hang();
      const res = await scrape();
      assert.equal(res.status, 200, 'a scrape failing whole would say the daemon is down');
      const body = await res.text();
      assert.match(body, /lis_worker_heartbeat_timestamp_seconds\{[^}]*\} \d/);
      assert.match(body, /lis_rows_given_back_total\{stage="push",reason="database"[^}]*\} 1/);
      assert.match(body, /lis_process_process_cpu_seconds_total/);
      assert.match(body, /lis_metric_read_failed\{metric="lis_queue_rows"[^}]*\} 1/);
      assert.match(body, /lis_metric_read_failed\{metric="lis_frontend_lag_rows"[^}]*\} 1/);
      assert.doesNotMatch(body, /^lis_queue_rows\{/m, 'no stale queue figures');
      assert.ok(!body.includes(t.url) && !body.includes(new URL(t.url).password), 'no database password');
    });
  }
});
