// Download throughput: lis_downloadd's worker (claim, fetch, sniff, hash, temp
// file + fsync + rename, finish rows) against a plain got loop writing the
// same files at the same concurrency, from a keep-alive server on 127.0.0.1
// in a child process (so it does not share the daemon's event loop).
//
// Then head-of-line blocking: the same small downloads with and without one
// URL per chunk that drips a byte a second; the clean rows' throughput should
// not suffer (`ratio drip_vs_clean` near 1.00).
//
//   npm run bench:download -- [--small 3000] [--large 600] [--concurrency 32] [--drip-rows 3000] [--deadline 600]
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import got from 'got';
import { sql } from 'kysely';
import sharp from 'sharp';
import { parseConfig } from '../src/config/load-config.ts';
import { runDaemon } from '../src/daemon/run-daemon.ts';
import { DownloadWorker } from '../src/download/download-worker.ts';
import { lis_hash_for_url } from '../src/hash/image-hash.ts';
import { createLogger } from '../src/log/create-logger.ts';
import { originalPath } from '../src/store/store-layout.ts';
import { benchOptions, flag, hasSwitch } from './lib/bench-args.ts';
import { freshBenchDatabase, printRatio } from './lib/bench-database.ts';

benchOptions({ small: 'N', large: 'N', concurrency: 'N', 'drip-rows': 'N', deadline: 'SECONDS', serve: null });
/** No daemon run of this bench is longer. */
const deadlineSeconds = flag('deadline', 600);

async function noiseJpeg(width: number, height: number, quality: number): Promise<Buffer> {
  const raw = crypto.randomBytes(width * height * 3);
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .blur(1.0)
    .jpeg({ quality })
    .toBuffer();
}

/** The child: serves /small/* and /large/* with keep-alive until killed. */
async function serve(): Promise<void> {
  const small = await noiseJpeg(300, 225, 85);
  const large = await noiseJpeg(1020, 765, 85);
  const server = http.createServer({ keepAlive: true, keepAliveTimeout: 30_000 }, (req, res) => {
    if (req.url!.startsWith('/drip/')) {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': small.length });
      let sent = 0;
      const timer = setInterval(() => res.write(small.subarray(sent, ++sent)), 1000);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const body = req.url!.startsWith('/large/') ? large : small;
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () =>
    process.send!({ port: (server.address() as import('node:net').AddressInfo).port, small: small.length, large: large.length }),
  );
}

interface Figures {
  images: number;
  bytes: number;
  seconds: number;
}

const show = (f: Figures) => `${(f.images / f.seconds).toFixed(0).padStart(6)} images/s ${(f.bytes / f.seconds / 1e6).toFixed(1).padStart(7)} MB/s`;

async function main(): Promise<void> {
  const counts = { small: flag('small', 3000), large: flag('large', 600) };
  const concurrency = flag('concurrency', 32);
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: ['--import', 'tsx'] });
  const info = await new Promise<{ port: number; small: number; large: number }>((resolve) => child.once('message', resolve as never));
  const origin = `http://127.0.0.1:${info.port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-bench-download-'));
  const bench = await freshBenchDatabase('lis_bench_download');
  console.log(
    `server: small ${(info.small / 1024).toFixed(0)} KB, large ${(info.large / 1024).toFixed(0)} KB JPEGs; concurrency ${concurrency}; ${os.cpus().length} cores`,
  );
  try {
    for (const kind of ['small', 'large'] as const) {
      const n = counts[kind];
      const size = info[kind];
      const config = parseConfig(
        {
          // A host of its own for each kind: the small run's rows have their files in its own store, and lis_downloadd
          // takes a fresh, empty store of a host whose rows have files for an unmounted disk, and pauses (the bench hung).
          host: `bench-${kind}`,
          database: { url: bench.url },
          stores: { originals: path.join(dir, `daemon-${kind}`) },
          log: { dir: path.join(dir, 'log') },
          download: { concurrency, perHostConcurrency: concurrency, allowAddresses: ['127.0.0.1:*'] },
        },
        {},
      );
      const urls = Array.from({ length: n }, (_, i) => `${origin}/${kind}/${i}.jpg`);
      await bench.db
        .insertInto('live_images')
        .values(urls.map((image_url) => ({ country: 'uk', datasource_id: 1, image_url })))
        .execute();

      const log = createLogger({ component: 'downloadd', log: config.log, screen: false, files: false });
      const worker = new DownloadWorker(config, bench.db, 'uk');
      let started = performance.now();
      const totals = await runDaemon(worker, {
        config,
        db: bench.db,
        databaseUrl: bench.url,
        log,
        country: 'uk',
        chunkSize: 500,
        service: false,
        // No wait without a deadline: a daemon that pauses (a store it will not write) fails the bench, not hangs it.
        signal: AbortSignal.timeout(deadlineSeconds * 1000),
        workerId: `bench:${kind}`,
      });
      const daemon: Figures = { images: totals.done, bytes: totals.done * size, seconds: (performance.now() - started) / 1000 };
      if (totals.done !== n) throw new Error(`only ${totals.done} of ${n} downloaded (${totals.failed} failed) within --deadline ${deadlineSeconds} s`);

      // Baseline: the same downloads and files, and nothing else (no queue, no checks, no fsync).
      const agent = { http: new http.Agent({ keepAlive: true, maxSockets: concurrency }) };
      const baseConfig = { stores: { ...config.stores, originals: path.join(dir, `baseline-${kind}`) } };
      let next = 0;
      started = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < urls.length) {
            const url = urls[next++];
            const file = originalPath(baseConfig, 'uk', lis_hash_for_url(url));
            await fs.promises.mkdir(path.dirname(file), { recursive: true });
            await pipeline(got.stream(url, { agent, retry: { limit: 0 } }), fs.createWriteStream(file));
          }
        }),
      );
      const baseline: Figures = { images: n, bytes: n * size, seconds: (performance.now() - started) / 1000 };
      agent.http.destroy();
      console.log(
        `${kind.padEnd(5)} x${n}: lis_downloadd ${show(daemon)} | plain got loop ${show(baseline)} | ratio ${(daemon.seconds ? baseline.seconds / daemon.seconds : 0).toFixed(2)}`,
      );
    }
    await dripComparison({ origin, dir, bench, concurrency, n: flag('drip-rows', 3000) });
  } finally {
    child.kill();
    await bench.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The clean rows' throughput with one drip-feed URL per chunk against without:
 * time until every clean row is done (the drips end later, at the download
 * timeout, shortened here to 20 s).
 */
async function dripComparison(o: {
  origin: string;
  dir: string;
  bench: Awaited<ReturnType<typeof freshBenchDatabase>>;
  concurrency: number;
  n: number;
}): Promise<void> {
  const chunkSize = 500;
  const took: number[] = [];
  // Each twice, in ABBA order, compared per pair (rounds 0-1 and 2-3): a drift in the machine's load
  // (or a warming trend) moves both sides of a pair alike, and the two pairs see it in opposite order.
  for (const [round, mode] of (['clean', 'drip', 'drip', 'clean'] as const).entries()) {
    await sql`TRUNCATE live_images, claimable_rows`.execute(o.bench.db);
    const config = parseConfig(
      {
        host: 'bench',
        database: { url: o.bench.url },
        stores: { originals: path.join(o.dir, `drip-${mode}-${round}`) },
        log: { dir: path.join(o.dir, 'log') },
        download: { concurrency: o.concurrency, perHostConcurrency: o.concurrency, allowAddresses: ['127.0.0.1:*'], timeouts: { totalSeconds: 20 } },
      },
      {},
    );
    // Ids follow the insert order: the drip URL is the first row of each chunk.
    const urls = Array.from({ length: o.n }, (_, i) => `${o.origin}/small/${mode}-${round}-${i}.jpg`);
    if (mode === 'drip') for (let i = 0; i < urls.length; i += chunkSize) urls.splice(i, 0, `${o.origin}/drip/${i}.jpg`);
    await o.bench.db
      .insertInto('live_images')
      .values(urls.map((image_url) => ({ country: 'uk', datasource_id: 1, image_url })))
      .execute();
    const log = createLogger({ component: 'downloadd', log: config.log, screen: false, files: false });
    const started = performance.now();
    let cleanDone = 0;
    await runDaemon(new DownloadWorker(config, o.bench.db, 'uk'), {
      config,
      db: o.bench.db,
      databaseUrl: o.bench.url,
      log,
      country: 'uk',
      chunkSize,
      service: false,
      signal: AbortSignal.timeout(deadlineSeconds * 1000),
      workerId: `bench:${mode}:${round}`,
      onProgress: (t) => {
        if (!cleanDone && t.done >= o.n) cleanDone = performance.now();
      },
    });
    const seconds = ((cleanDone || performance.now()) - started) / 1000;
    took.push(seconds);
    console.log(
      `${mode.padEnd(5)} x${o.n}${mode === 'drip' ? ` + ${urls.length - o.n} drip URLs` : ''}: clean rows ${(o.n / seconds).toFixed(0)} images/s (${seconds.toFixed(2)} s)`,
    );
  }
  // Throughput with drips over throughput without: clean seconds over drip seconds, per pair.
  const pairs = [took[0] / took[1], took[3] / took[2]];
  console.log(`pairs drip_vs_clean: ${pairs.map((r) => r.toFixed(2)).join(', ')}`);
  printRatio('drip_vs_clean', Math.sqrt(pairs[0] * pairs[1]));
}

if (hasSwitch('serve')) await serve();
else await main();
