import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import client from 'prom-client';
import type { Db } from '../db/connect.ts';
import type { RunObserver } from './run-daemon.ts';
import { queueDepth } from '../queue/queue-figures.ts';
import { listenOrExplain } from '../util/listen.ts';
import { createSmallServer } from '../util/small-server.ts';

export interface ExporterOptions {
  db: Db;
  component: string;
  /** The instance's country; undefined for the manager, which works all (its queue figures then cover all). */
  country?: string;
  host: string;
  port: number;
  /** Free space of these folders is exposed as lis_store_free_bytes{store}. */
  stores?: Record<string, string>;
  /** /health says 503 when no heartbeat came for three of these. */
  heartbeatSeconds?: number;
  /** The component's own metrics (the pusher's frontend lag, the manager's events), registered on the instance's registry. */
  extra?: (registry: client.Registry) => void;
  /** How long a scrape waits for a family read from the database (SCRAPE_DEADLINE_MS; tests shorten it). */
  scrapeDeadlineMs?: number;
}

function nearestExisting(dir: string): string {
  let at = path.resolve(dir);
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** Pure: alive and beating, when the last heartbeat (or the start, before the first) is younger than three beats. */
export function isHealthy(secondsSinceBeat: number, heartbeatSeconds: number): boolean {
  return secondsSinceBeat < 3 * heartbeatSeconds;
}

/** Queue figures are read at most this often, however often Prometheus scrapes. */
const QUEUE_CACHE_MS = 2_000;

/** A scrape answers within this, whatever the database does (Prometheus gives up at its scrape_timeout, 10 s by default). */
const SCRAPE_DEADLINE_MS = 5_000;

const READ_FAILED = 'lis_metric_read_failed';

/** `promise`, or a rejection once `ms` have passed. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * The registry's exposition, each family on its own: one that cannot be read
 * in time (the database away or not answering) is left out and named in
 * lis_metric_read_failed{metric}, rather than failing the whole scrape, which
 * Prometheus would show as the daemon down and lose its own counters with.
 */
async function exposition(registry: client.Registry, readFailed: client.Gauge, deadlineMs: number): Promise<string> {
  const names = registry
    .getMetricsAsArray()
    .map((m) => m.name)
    .filter((n) => n !== READ_FAILED);
  const read = await Promise.allSettled(names.map((name) => within(registry.getSingleMetricAsString(name), deadlineMs)));
  readFailed.reset();
  const parts: string[] = [];
  read.forEach((r, i) => {
    if (r.status === 'fulfilled') parts.push(r.value);
    else readFailed.set({ metric: names[i] }, 1);
  });
  parts.push(await registry.getSingleMetricAsString(READ_FAILED));
  return `${parts.join('\n\n')}\n`;
}

/**
 * Prometheus exposition for one daemon instance at `http://host:port/metrics`:
 * rows done and failed (by reason), time per row and per claim, chunk sizes,
 * the queue's depth and age, this worker's heartbeat, the stores' free space,
 * and the component's own (`extra`); `/health` answers 200 or 503 by the
 * heartbeat. Returns the observer
 * the runner reports to, and a close function.
 */
export async function startPrometheusExporter(options: ExporterOptions): Promise<{ observer: RunObserver; url: string; close: () => Promise<void> }> {
  const registry = new client.Registry();
  registry.setDefaultLabels({ component: options.component, country: options.country ?? 'all' });
  client.collectDefaultMetrics({ register: registry, prefix: 'lis_process_' });
  const done = new client.Counter({ name: 'lis_rows_done_total', help: 'Rows finished by this worker', labelNames: ['stage'], registers: [registry] });
  const failed = new client.Counter({
    name: 'lis_rows_failed_total',
    help: 'Failed tries of rows by this worker, charged to the source, by error class (a row retried counts each time it fails)',
    labelNames: ['stage', 'reason', 'retryable'],
    registers: [registry],
  });
  const rowSeconds = new client.Histogram({
    name: 'lis_row_seconds',
    help: 'Seconds from claiming a row to its result',
    labelNames: ['stage'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const claimSeconds = new client.Histogram({
    name: 'lis_claim_seconds',
    help: 'Seconds a chunk claim takes',
    labelNames: ['stage'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const chunkRows = new client.Histogram({
    name: 'lis_chunk_rows',
    help: 'Rows gained per claim',
    labelNames: ['stage'],
    buckets: [0, 1, 10, 50, 100, 250, 500, 1000, 5000],
    registers: [registry],
  });
  const givenBack = new client.Counter({
    name: 'lis_rows_given_back_total',
    help: 'Tries of rows given back uncharged because of our own fault (owner "ours" in the failure table), by class (a row given back again counts again)',
    labelNames: ['stage', 'reason'],
    registers: [registry],
  });
  // Free space is lis_store_free_bytes below, read at each scrape for every store; the size comes from the stage's store checks.
  const storeTotal = new client.Gauge({
    name: 'lis_store_size_bytes',
    help: 'Size of the file system of each store this worker writes (store=originals|thumbnails, as lis_store_free_bytes)',
    labelNames: ['store'],
    registers: [registry],
  });
  const paused = new client.Gauge({
    name: 'lis_worker_paused',
    help: '1 while this worker claims nothing because a store is full or unwritable',
    registers: [registry],
  });
  const heartbeat = new client.Gauge({
    name: 'lis_worker_heartbeat_timestamp_seconds',
    help: 'When this worker last told the database it is alive',
    registers: [registry],
  });
  const readFailed = new client.Gauge({
    name: READ_FAILED,
    help: '1 for each metric this scrape could not read in time (the database away, most often); it is left out, the rest is served',
    labelNames: ['metric'],
    registers: [registry],
  });
  let cache: { at: number; rows: Awaited<ReturnType<typeof queueDepth>> } | null = null;
  // One read at a time, shared by the gauges that need it: a hung database is not asked again by each.
  let reading: Promise<Awaited<ReturnType<typeof queueDepth>>> | null = null;
  const readQueue = async () => {
    if (cache && performance.now() - cache.at <= QUEUE_CACHE_MS) return cache.rows;
    reading ??= queueDepth(options.db, options.country)
      .then((rows) => (cache = { at: performance.now(), rows }).rows)
      .finally(() => (reading = null));
    return reading;
  };
  new client.Gauge({
    name: 'lis_queue_rows',
    help: 'Waiting rows of this country by stage: due now, retrying later, held by workers',
    labelNames: ['stage', 'kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const q of await readQueue()) {
        this.set({ stage: q.stage, kind: 'due' }, q.due);
        this.set({ stage: q.stage, kind: 'later' }, q.later);
        this.set({ stage: q.stage, kind: 'held' }, q.held);
      }
    },
  });
  new client.Gauge({
    name: 'lis_queue_oldest_seconds',
    help: 'How long the oldest due row of each stage has waited',
    labelNames: ['stage'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const q of await readQueue()) this.set({ stage: q.stage }, q.oldestSeconds);
    },
  });

  new client.Gauge({
    name: 'lis_store_free_bytes',
    help: 'Free space on the file system of each store',
    labelNames: ['store'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [store, dir] of Object.entries(options.stores ?? {})) {
        // A store not made yet (nothing downloaded so far) will live on its nearest existing parent's file system.
        const stats = await fs.promises.statfs(nearestExisting(dir)).catch(() => null);
        if (stats) this.set({ store }, stats.bavail * stats.bsize);
      }
    },
  });
  options.extra?.(registry);
  // The same label as lis_store_free_bytes (originals|thumbnails), never a folder path: free / size must join.
  const storeName = (dir: string) => Object.entries(options.stores ?? {}).find(([, folder]) => path.resolve(folder) === path.resolve(dir))?.[0] ?? 'other';
  // Ages on the monotonic clock: on the wall clock, a step forward of a minute made a beating daemon `stale` (a
  // liveness probe would restart it), and a step back of an hour kept a hung one `ok` for that hour.
  const started = performance.now();
  let lastBeat: number | null = null;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // By path: a scrape job's `params` (or a probe's cache-buster) add a query string, and must not get a 404.
    const at = (req.url ?? '').split('?')[0];
    if (at === '/health') {
      const ageSeconds = (performance.now() - (lastBeat ?? started)) / 1000;
      const ok = isHealthy(ageSeconds, options.heartbeatSeconds ?? 10);
      const body = {
        status: ok ? 'ok' : 'stale',
        component: options.component,
        country: options.country ?? null,
        pid: process.pid,
        heartbeatAgeSeconds: Math.round(ageSeconds),
      };
      res.writeHead(ok ? 200 : 503, { 'Content-Type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
      return;
    }
    if (at !== '/metrics') {
      res.writeHead(404).end('see /metrics and /health\n');
      return;
    }
    try {
      const body = await exposition(registry, readFailed, options.scrapeDeadlineMs ?? SCRAPE_DEADLINE_MS);
      res.writeHead(200, { 'Content-Type': registry.contentType }).end(body);
    } catch (error) {
      res.writeHead(500).end(`${(error as Error).message}\n`);
    }
  };
  // A scrape or a probe takes one socket at a time: 32 leave room for several, and bound what anyone else can hold.
  const server = createSmallServer(32, (req, res) => void handle(req, res));
  await listenOrExplain(server, options.port, options.host, `${options.component} /metrics`);
  const address = server.address() as { port: number };
  const observer: RunObserver = {
    onClaim: (stage, seconds, rows) => {
      claimSeconds.observe({ stage }, seconds);
      chunkRows.observe({ stage }, rows);
    },
    onResult: (stage, result, seconds, kind) => {
      rowSeconds.observe({ stage }, seconds);
      if (result.ok) done.inc({ stage });
      else if (kind === 'ours') givenBack.inc({ stage, reason: result.failure.errorClass });
      else failed.inc({ stage, reason: result.failure.errorClass, retryable: String(result.failure.retryable) });
    },
    onStoreHealth: (health) => {
      if (health.totalBytes !== null) storeTotal.set({ store: storeName(health.dir) }, health.totalBytes);
    },
    onPaused: (isPaused) => paused.set(isPaused ? 1 : 0),
    onHeartbeat: () => {
      lastBeat = performance.now();
      heartbeat.setToCurrentTime();
    },
  };
  return {
    observer,
    url: `http://${options.host}:${address.port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
