import http from 'node:http';
import client from 'prom-client';
import type { Db } from '../db/connect.ts';
import type { RunObserver } from '../daemon/run-daemon.ts';
import { queueDepth } from './queue-figures.ts';

export interface ExporterOptions {
  db: Db;
  component: string;
  country: string;
  host: string;
  port: number;
}

/** Queue figures are read at most this often, however often Prometheus scrapes. */
const QUEUE_CACHE_MS = 2_000;

/**
 * Prometheus exposition for one daemon at `http://host:port/metrics`: rows
 * done and failed (by reason), time per row and per claim, chunk sizes, the
 * queue's depth and age, and this worker's heartbeat. Returns the observer
 * the runner reports to, and a close function.
 */
export async function startPrometheusExporter(options: ExporterOptions): Promise<{ observer: RunObserver; url: string; close: () => Promise<void> }> {
  const registry = new client.Registry();
  registry.setDefaultLabels({ component: options.component, country: options.country });
  client.collectDefaultMetrics({ register: registry, prefix: 'lis_process_' });
  const done = new client.Counter({ name: 'lis_rows_done_total', help: 'Rows finished by this worker', labelNames: ['stage'], registers: [registry] });
  const failed = new client.Counter({ name: 'lis_rows_failed_total', help: 'Rows failed by this worker, by error class', labelNames: ['stage', 'reason', 'retryable'], registers: [registry] });
  const rowSeconds = new client.Histogram({
    name: 'lis_row_seconds', help: 'Seconds from claiming a row to its result', labelNames: ['stage'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300], registers: [registry],
  });
  const claimSeconds = new client.Histogram({ name: 'lis_claim_seconds', help: 'Seconds a chunk claim takes', labelNames: ['stage'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [registry] });
  const chunkRows = new client.Histogram({ name: 'lis_chunk_rows', help: 'Rows gained per claim', labelNames: ['stage'], buckets: [0, 1, 10, 50, 100, 250, 500, 1000, 5000], registers: [registry] });
  const givenBack = new client.Counter({ name: 'lis_rows_given_back_total', help: 'Rows given back uncharged because of our own fault (owner "ours" in the failure table), by class', labelNames: ['stage', 'reason'], registers: [registry] });
  const storeFree = new client.Gauge({ name: 'lis_store_free_bytes', help: 'Free bytes on the file system of each store this worker writes', labelNames: ['store'], registers: [registry] });
  const storeTotal = new client.Gauge({ name: 'lis_store_size_bytes', help: 'Size of the file system of each store this worker writes', labelNames: ['store'], registers: [registry] });
  const paused = new client.Gauge({ name: 'lis_worker_paused', help: '1 while this worker claims nothing because a store is full or unwritable', registers: [registry] });
  const heartbeat = new client.Gauge({ name: 'lis_worker_heartbeat_timestamp_seconds', help: 'When this worker last told the database it is alive', registers: [registry] });
  let cache: { at: number; rows: Awaited<ReturnType<typeof queueDepth>> } | null = null;
  const readQueue = async () => {
    if (!cache || Date.now() - cache.at > QUEUE_CACHE_MS) cache = { at: Date.now(), rows: await queueDepth(options.db, options.country) };
    return cache.rows;
  };
  new client.Gauge({
    name: 'lis_queue_rows', help: 'Waiting rows of this country by stage: due now, retrying later, held by workers', labelNames: ['stage', 'kind'], registers: [registry],
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
    name: 'lis_queue_oldest_seconds', help: 'How long the oldest due row of each stage has waited', labelNames: ['stage'], registers: [registry],
    async collect() {
      this.reset();
      for (const q of await readQueue()) this.set({ stage: q.stage }, q.oldestSeconds);
    },
  });

  const server = http.createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    try {
      const body = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType }).end(body);
    } catch (error) {
      res.writeHead(500).end(`${(error as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
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
      if (health.freeBytes !== null) storeFree.set({ store: health.dir }, health.freeBytes);
      if (health.totalBytes !== null) storeTotal.set({ store: health.dir }, health.totalBytes);
    },
    onPaused: (isPaused) => paused.set(isPaused ? 1 : 0),
    onHeartbeat: () => heartbeat.setToCurrentTime(),
  };
  return {
    observer,
    url: `http://${options.host}:${address.port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
