import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sql } from 'kysely';
import client from 'prom-client';
import { recordEvent } from '../src/manager/manager-events.ts';
import { registerManagerEventMetrics } from '../src/manager/manager-event-metrics.ts';
import { instanceMetricsPort, metricsUrlFile } from '../src/config/metrics-ports.ts';
import { isHealthy, startPrometheusExporter } from '../src/daemon/prometheus-exporter.ts';
import { registerFrontendLagMetrics } from '../src/push/frontend-lag-metrics.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { createDb } from '../src/db/connect.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { freeConsecutivePorts } from './helpers/free-port.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';
import { readLog } from './helpers/log-files.ts';
import { restoreWallClock, stepWallClock } from './helpers/wall-clock.ts';

/** A GET that fails, naming it, if no answer comes within 15 s: a hang is told as such, not as mocha's timeout. */
const get = (url: string) => fetch(url, { signal: AbortSignal.timeout(15_000) });

describe('metrics per daemon instance', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase({ overrides: { queue: { heartbeatSeconds: 0.5 } } })));
  afterEach(async () => t.drop());

  it('gives each country its own port: the base plus its place in countries; 0 picks one, null none', () => {
    assert.equal(instanceMetricsPort(9401, 'uk', ['uk', 'de', 'fr']), 9401);
    assert.equal(instanceMetricsPort(9401, 'fr', ['uk', 'de', 'fr']), 9403);
    assert.equal(instanceMetricsPort(9401, 'uk', []), 9401);
    assert.equal(instanceMetricsPort(9400, undefined, ['uk', 'de']), 9400);
    assert.equal(instanceMetricsPort(0, 'de', ['uk', 'de']), 0);
    assert.equal(instanceMetricsPort(null, 'de', ['uk', 'de']), null);
    assert.equal(instanceMetricsPort(undefined, 'de', ['uk', 'de']), null);
  });

  it('/health is healthy while heartbeats come, and not after three are missed', () => {
    assert.equal(isHealthy(0, 10), true);
    assert.equal(isHealthy(29.9, 10), true);
    assert.equal(isHealthy(30, 10), false);
    assert.equal(isHealthy(2, 0.5), false);
  });

  it("two countries' daemons on one host each serve /metrics and /health on their own port, and say where in the run dir", async function () {
    this.timeout(90_000);
    const base = await freeConsecutivePorts(2); // a base port for two countries' instances
    const runDir = path.join(t.dir, 'run');
    const config = t.writeConfig({ countries: ['uk', 'de'], metrics: { ports: { thumbnaild: base } }, services: { runDir } });
    const daemons = ['uk', 'de'].map((country) => spawnTs('bin/lis_thumbnaild', ['--country', country, '--service', '--config', config]));
    try {
      for (const [i, country] of ['uk', 'de'].entries()) {
        const urlFile = metricsUrlFile(runDir, 'thumbnaild', country);
        await waitFor(() => fs.existsSync(urlFile), 30_000, `${country}'s metrics URL`);
        const url = fs.readFileSync(urlFile, 'utf8').trim();
        assert.equal(url, `http://127.0.0.1:${base + i}/metrics`);
        const body = await (await get(url)).text();
        assert.match(body, new RegExp(`lis_process_process_resident_memory_bytes\\{component="thumbnaild",country="${country}"\\} [1-9]`));
        assert.match(body, /lis_store_free_bytes\{store="originals",component="thumbnaild",country="\w+"\} [1-9]\d*/);
        let health: Response | null = null;
        await waitFor(async () => (health = await get(url.replace('/metrics', '/health'))).status === 200, 20_000, `${country}'s health`);
        const status = (await health!.json()) as { status: string; component: string; country: string; pid: number };
        assert.deepEqual([status.status, status.component, status.country, status.pid], ['ok', 'thumbnaild', country, daemons[i].child.pid]);
      }
    } finally {
      for (const d of daemons) d.child.kill('SIGTERM');
      for (const d of daemons) {
        const exit = await within(d.exited, `exit of lis_thumbnaild (pid ${d.child.pid}) after SIGTERM`, 20_000).catch((error: Error) => {
          d.child.kill('SIGKILL');
          throw new Error(`${error.message}:\n${d.output()}`, { cause: error });
        });
        assert.equal(exit.code, 0, d.output());
      }
    }
    for (const country of ['uk', 'de']) assert.equal(fs.existsSync(metricsUrlFile(runDir, 'thumbnaild', country)), false, 'the URL file goes with the daemon');
  });

  it("the pusher exposes each frontend's lag, the manager its events of the last day", async () => {
    await addFrontend(t.db, 'n1', path.join(t.dir, 'n1'));
    await addFrontend(t.db, 'n2', path.join(t.dir, 'n2'), false);
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state)
              VALUES ('uk', 16, 'http://feed.example.com/1.jpg', 'live', 'done'), ('uk', 16, 'http://feed.example.com/2.jpg', 'push', 'waiting'),
                     ('de', 16, 'http://feed.example.com/3.jpg', 'push', 'waiting')`.execute(t.db);
    const pusher = new client.Registry();
    registerFrontendLagMetrics(pusher, t.db, 'uk');
    const lag = await pusher.metrics();
    assert.match(lag, /lis_frontend_lag_rows\{frontend="n1",kind="live"\} 1/);
    assert.match(lag, /lis_frontend_lag_rows\{frontend="n1",kind="push"\} 1/);
    assert.match(lag, /lis_frontend_enabled\{frontend="n2"\} 0/);

    await recordEvent(t.db, { check: 'stuck_jobs', country: 'uk', subject: 'host1:12', rows: 40, detail: 'released' });
    await recordEvent(t.db, { check: 'stuck_jobs', country: 'uk', subject: 'host1:13', rows: 2, detail: 'released' });
    await sql`INSERT INTO manager_events (at, check_name, country, rows, detail) VALUES (now() - interval '2 days', 'stuck_jobs', 'uk', 99, 'old')`.execute(
      t.db,
    );
    const manager = new client.Registry();
    registerManagerEventMetrics(manager, t.db);
    const events = await manager.metrics();
    assert.match(events, /lis_manager_events_last_day\{check="stuck_jobs",event_country="uk"\} 2/);
    assert.match(events, /lis_manager_event_rows_last_day\{check="stuck_jobs",event_country="uk"\} 42/);
  });

  it("says which frontends are switched off while the lag's first read still runs (a big country's outlasts many scrapes)", async () => {
    await addFrontend(t.db, 'n1', path.join(t.dir, 'n1'));
    await addFrontend(t.db, 'n2', path.join(t.dir, 'n2'), false);
    const registry = new client.Registry();
    registerFrontendLagMetrics(registry, t.db, 'uk');
    const holder = createDb(t.url, 1);
    let lag: Promise<string> | null = null;
    try {
      // The lag's read held behind a lock on the push records, as a big country's is behind its scan.
      await holder.transaction().execute(async (trx) => {
        await sql`LOCK TABLE frontend_pushes IN ACCESS EXCLUSIVE MODE`.execute(trx);
        lag = registry.getSingleMetricAsString('lis_frontend_lag_rows');
        lag.catch(() => {});
        await waitFor(
          async () => {
            const { rows } = await sql<{
              n: string;
            }>`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(trx);
            return Number(rows[0].n) > 0;
          },
          10_000,
          "the lag's read waiting",
        );
        const enabled = await within(registry.getSingleMetricAsString('lis_frontend_enabled'), 'lis_frontend_enabled while the lag is read', 5_000);
        assert.match(enabled, /^lis_frontend_enabled\{frontend="n1"\} 1$/m);
        assert.match(enabled, /^lis_frontend_enabled\{frontend="n2"\} 0$/m);
      });
      // The lock gone, the lag comes too.
      assert.match(await within(lag!, 'the lag once the lock went', 10_000), /lis_frontend_lag_rows\{frontend="n2",kind="live"\} 0/);
    } finally {
      await holder.destroy();
    }
  });

  it('reads the frontend lag once for every scrape that comes while it is read, and serves the last value while a new read runs', async function () {
    this.timeout(20_000);
    await addFrontend(t.db, 'n1', path.join(t.dir, 'n1'));
    await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state) VALUES ('uk', 16, 'http://feed.example.com/1.jpg', 'push', 'waiting')`.execute(
      t.db,
    );
    const relay = await startDatabaseProxy(t.url);
    const db = createDb(relay.url, 4);
    try {
      const lagReads = relay.countSent('AS live');
      const registry = new client.Registry();
      // Stale at once (a read slower than the scrape interval, as on a big country, is stale when the next scrape comes).
      registerFrontendLagMetrics(registry, db, 'uk', 0);
      const pushLag = async () => /lis_frontend_lag_rows\{frontend="n1",kind="push"\} (\d+)/.exec(await registry.metrics())![1];
      // Three scrapes at once, two series each: one read (there were six, and as many table scans on a big country).
      assert.deepEqual(await Promise.all([pushLag(), pushLag(), pushLag()]), ['1', '1', '1']);
      assert.equal(lagReads(), 1);
      // A row more: the next scrape gets the last value at once, and the read behind it brings the new one.
      await sql`INSERT INTO live_images (country, datasource_id, image_url, stage, state) VALUES ('uk', 16, 'http://feed.example.com/2.jpg', 'push', 'waiting')`.execute(
        t.db,
      );
      assert.equal(await pushLag(), '1');
      await waitFor(async () => (await pushLag()) === '2', 10_000, 'the new value');
      // The database away: said (the scrape's read fails), not hidden behind the last value.
      await relay.cut();
      await waitFor(
        async () =>
          registry.metrics().then(
            () => false,
            () => true,
          ),
        10_000,
        'a failed read',
      );
    } finally {
      await relay.cut();
      await db.destroy();
    }
  });

  it("labels a store's size as its free space (store=originals|thumbnails), so that free / size can be computed", async () => {
    const stores = { originals: path.join(t.dir, 'originals'), thumbnails: path.join(t.dir, 'thumbnails') };
    const exporter = await startPrometheusExporter({ db: t.db, component: 'thumbnaild', country: 'uk', host: '127.0.0.1', port: 0, stores });
    try {
      exporter.observer.onStoreHealth?.({ dir: stores.thumbnails, ok: true, reason: null, freeBytes: 1000, totalBytes: 4000 });
      const body = await (await fetch(exporter.url)).text();
      assert.match(body, /^lis_store_size_bytes\{store="thumbnails",component="thumbnaild",country="uk"\} 4000$/m);
      assert.match(body, /^lis_store_free_bytes\{store="thumbnails",component="thumbnaild",country="uk"\} \d+$/m);
      assert.ok(!body.includes(t.dir), 'no folder paths as label values');
    } finally {
      await exporter.close();
    }
  });

  it('holds at most 32 sockets however many are opened (a descriptor flood through a /metrics port), and answers again once they go', async () => {
    const exporter = await startPrometheusExporter({ db: t.db, component: 'downloadd', country: 'uk', host: '127.0.0.1', port: 0 });
    const sockets: net.Socket[] = [];
    let closed = 0;
    try {
      const port = Number(new URL(exporter.url).port);
      await Promise.all(
        Array.from(
          { length: 100 },
          () =>
            new Promise<void>((resolve) => {
              const socket = net.connect(port, '127.0.0.1', () => resolve());
              socket.on('error', () => {});
              socket.on('close', () => closed++);
              sockets.push(socket);
            }),
        ),
      );
      // Idle sockets that send nothing: the server closes those past its bound at once.
      await waitFor(() => closed >= 100 - 32, 5000, 'the sockets past 32 closed by the server');
      assert.equal(closed, 100 - 32);
      for (const socket of sockets) socket.destroy();
      await waitFor(async () => (await get(exporter.url.replace(/\/metrics$/, '/health')).catch(() => null))?.status === 200, 5000, '/health answering again');
    } finally {
      for (const socket of sockets) socket.destroy();
      await exporter.close();
    }
  });

  it("/health counts a heartbeat's age on the monotonic clock: a step of the wall clock makes a beating daemon neither stale nor a hung one fresh", async () => {
    stepWallClock(0);
    const exporter = await startPrometheusExporter({ db: t.db, component: 'downloadd', country: 'uk', host: '127.0.0.1', port: 0, heartbeatSeconds: 0.5 });
    const health = async () => `${(await get(exporter.url.replace('/metrics', '/health'))).status}`;
    try {
      exporter.observer.onHeartbeat?.();
      stepWallClock(60_000);
      assert.equal(await health(), '200', 'a minute forward (NTP): stale, and a liveness probe would restart a daemon that beats');
      // An hour back, and no beat for over three beats' time (1.5 s): it is stale, not fresh for an hour.
      stepWallClock(-3600_000);
      await waitFor(async () => (await health()) === '503', 10_000, 'stale');
    } finally {
      restoreWallClock();
      await exporter.close();
    }
  });

  it('says tries, not rows, in the HELP of the series that count each try of a row', async () => {
    const exporter = await startPrometheusExporter({ db: t.db, component: 'downloadd', country: 'uk', host: '127.0.0.1', port: 0 });
    try {
      const body = await (await fetch(exporter.url)).text();
      // A row failing three times before it is parked adds 3 to lis_rows_failed_total: the README's datasource figures say "tries" too.
      assert.match(body, /^# HELP lis_rows_failed_total .*\btries\b.*each time/m);
      assert.match(body, /^# HELP lis_rows_given_back_total .*\btries\b/im);
    } finally {
      await exporter.close();
    }
  });

  it("names every series a daemon, the pusher and the manager serve in the README's Metrics section", async () => {
    const exporter = await startPrometheusExporter({
      db: t.db,
      component: 'pusherd',
      country: 'uk',
      host: '127.0.0.1',
      port: 0,
      extra: (registry) => {
        registerFrontendLagMetrics(registry, t.db, 'uk');
        registerManagerEventMetrics(registry, t.db);
      },
    });
    try {
      const body = await (await get(exporter.url)).text();
      const families = [...body.matchAll(/^# TYPE (lis_\w+) /gm)].map((m) => m[1]).filter((n) => !n.startsWith('lis_process_'));
      assert.ok(families.length >= 15, families.join(' '));
      const readme = fs.readFileSync(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('## Metrics and the status page'), readme.indexOf('## Healing'));
      assert.deepEqual(
        families.filter((name) => !section.includes(`\`${name}`)),
        [],
        'series the README does not name',
      );
    } finally {
      await exporter.close();
    }
  });

  it('a manager whose /metrics port is taken exits 1, saying why, and leaves no live workers row', async function () {
    this.timeout(60_000);
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const manager = spawnTs('bin/lis_managerd', ['--service', '--metrics-port', String(port), '--config', t.writeConfig()]);
      const exit = await within(manager.exited, `exit of the manager whose port is taken`, 20_000).catch((error: Error) => {
        manager.child.kill('SIGKILL');
        throw new Error(`${error.message}:\n${manager.output()}`, { cause: error });
      });
      assert.equal(exit.code, 1, manager.output());
      assert.match(manager.output(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
      const alive = await t.db.selectFrom('workers').select('id').where('component', '=', 'managerd').where('stopped_at', 'is', null).execute();
      assert.deepEqual(alive, [], 'no row says the manager is alive');
      // A service logs to files only: why it stopped is there too.
      assert.match(readLog(path.join(t.config.log.dir, 'managerd.error.log')), /cannot listen on .*EADDRINUSE/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('says the heartbeat of registering at once, not 0 (1970) until the next beat: a daemon and the manager', async function () {
    this.timeout(60_000);
    // Beats a minute apart: a timestamp seen within seconds of the start can only be registration's.
    const runDir = path.join(t.dir, 'run');
    const config = t.writeConfig({ queue: { heartbeatSeconds: 60 }, services: { runDir } });
    const started = Date.now() / 1000;
    const spawned = [
      { component: 'thumbnaild', country: 'uk', p: spawnTs('bin/lis_thumbnaild', ['--country', 'uk', '--service', '--metrics-port', '0', '--config', config]) },
      { component: 'managerd', country: undefined, p: spawnTs('bin/lis_managerd', ['--service', '--metrics-port', '0', '--config', config]) },
    ];
    try {
      for (const { component, country, p } of spawned) {
        const urlFile = metricsUrlFile(runDir, component, country);
        await waitFor(() => fs.existsSync(urlFile), 30_000, `${component}'s metrics URL`);
        const url = fs.readFileSync(urlFile, 'utf8').trim();
        let beat = 0;
        await waitFor(
          async () => {
            const m = /^lis_worker_heartbeat_timestamp_seconds\{[^}]*\} (\S+)$/m.exec(await (await get(url)).text());
            beat = m ? Number(m[1]) : 0;
            return beat > 0;
          },
          15_000,
          `${component}'s heartbeat timestamp (output: ${p.output()})`,
        );
        assert.ok(beat >= started - 1 && beat <= Date.now() / 1000 + 1, `${component}: ${beat} is the registration's time`);
      }
    } finally {
      for (const { p } of spawned) p.child.kill('SIGTERM');
      for (const { component, p } of spawned) {
        const exit = await within(p.exited, `exit of ${component} after SIGTERM`, 20_000).catch((error: Error) => {
          p.child.kill('SIGKILL');
          throw error;
        });
        assert.equal(exit.code, 0, p.output());
      }
    }
  });

  it('the manager serves /metrics and /health too', async function () {
    this.timeout(60_000);
    const runDir = path.join(t.dir, 'run');
    const manager = spawnTs('bin/lis_managerd', ['--service', '--metrics-port', '0', '--config', t.writeConfig({ services: { runDir } })]);
    try {
      const urlFile = metricsUrlFile(runDir, 'managerd', undefined);
      await waitFor(() => fs.existsSync(urlFile), 30_000, "the manager's metrics URL");
      const url = fs.readFileSync(urlFile, 'utf8').trim();
      // Each answer within a deadline (get), so that a hang is told as such, with the manager's output.
      try {
        assert.match(await (await get(url)).text(), /lis_store_free_bytes\{store="originals",component="managerd",country="all"\}/);
        await waitFor(async () => (await get(url.replace('/metrics', '/health'))).status === 200, 20_000, "the manager's health");
      } catch (error) {
        throw new Error(`${(error as Error).message}; the manager:\n${manager.output()}`, { cause: error });
      }
    } finally {
      manager.child.kill('SIGTERM');
      const exit = await Promise.race([manager.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000).unref())]);
      if (!exit) manager.child.kill('SIGKILL');
      assert.ok(exit, `the manager still running 20 s after SIGTERM:\n${manager.output()}`);
      assert.equal(exit.code, 0, manager.output());
    }
  });
});
