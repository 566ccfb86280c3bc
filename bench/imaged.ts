// lis_imaged on misses and hits, in one run:
// - misses: a live row lacks a preset and its 1800x1200 original is in the store: lis_imaged
//   makes it (decode with shrink-on-load, resize, mozjpeg, write to the store, record in
//   image_data, mark for pushing) and answers; each request a different row, as many in
//   flight as --concurrency;
// - the same misses through a plain sharp HTTP server that resizes one preset per request from
//   the same originals (no database, no store write): the floor for a made-to-order resizer.
//   It applies the same sharpening mask (thumbnail.defaults.sharpen) and the same JPEG settings
//   (src/thumbnail/jpeg-options.ts) as lis_imaged, so both make the same thumbnail. thumbor is not
//   installable here (no Python packages from PyPI on this machine), so the plain sharp server
//   stands in for it;
// - the plain server again, storing each file as lis_imaged does (temp file, fsync, rename): what
//   keeping the result costs, apart from the database;
// - hits through a real nginx with the shipped frontend config (the made files on its disk).
// Prints CPU per miss of each (node, its main thread apart, and the bench database's PostgreSQL processes) and their ratios, and ends with
// `ratio imaged_vs_plain_misses: X.XX` and `ratio imaged_vs_plain_storing_misses: X.XX` (misses/s over misses/s);
// - the image work alone, in this process (makePresets as a miss calls it, against the plain server's pipeline, the
//   same bytes in memory): `ratio imaged_vs_plain_image_work: X.XX`; what the misses' ratio falls short of it is what a
//   miss does besides the image (the durable file, the record and the lock in PostgreSQL, the log line).
//   node --import tsx bench/imaged.ts [--misses 400] [--concurrency 4] [--hits 4000] [--preset medium] [--profile DIR]
// --preset: which configured preset the misses ask for (medium, pad, by default; small is a crop, where the plain
// server's sharp pipeline runs libvips' attention search and lis_imaged finds the same offset itself).
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { sql } from 'kysely';
import sharp, { type ResizeOptions } from 'sharp';
import type { Preset } from '../src/config/thumbnail-config.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { createDb, type Db } from '../src/db/connect.ts';
import { createDownloadClient } from '../src/download/download-client.ts';
import { SchemeFetcher } from '../src/download/fetch-by-scheme.ts';
import { createImagedServer } from '../src/imaged/imaged-server.ts';
import { ThumbnailService } from '../src/imaged/thumbnail-service.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { writeFileAtomic } from '../src/store/atomic-file.ts';
import { originalPath, thumbnailRelativePath } from '../src/store/store-layout.ts';
import { jpegOptions } from '../src/thumbnail/jpeg-options.ts';
import { makePresets } from '../src/thumbnail/make-presets.ts';
import { resolveDetails } from '../src/thumbnail/process-details.ts';
import { createThumbnailWorker } from '../src/thumbnail/thumbnail-worker.ts';
import { photoJpeg, startNginx } from '../test/helpers/imaged-fixtures.ts';
import { argOf, benchOptions, flag } from './lib/bench-args.ts';
import { freshBenchDatabase, percentile, printRatio } from './lib/bench-database.ts';
import { cpuSeconds } from './lib/proc-stats.ts';
import { MainThreadProfile } from './lib/main-thread-profile.ts';

benchOptions({ misses: 'N', concurrency: 'N', hits: 'N', preset: 'NAME', profile: 'DIR' });

const misses = flag('misses', 400);
const concurrency = flag('concurrency', 4);
const hits = flag('hits', 4000);
const PRESET = argOf('preset') ?? 'medium';
/** `--profile DIR`: the main thread's CPU profile during each contender's runs, and their summaries, written there. */
const profileDir = argOf('profile');

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
function get(url: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ status: res.statusCode!, bytes }));
      })
      .on('error', reject);
  });
}

/** The plain server's resize for a preset's mode: what a plain resizer asks sharp for, the same geometry as ours. */
function plainFit(preset: Preset): ResizeOptions {
  if (preset.mode === 'crop') return { fit: 'cover', position: 'attention' };
  if (preset.mode === 'pad') return { fit: 'contain', background: '#ffffff' };
  return { fit: 'inside' };
}

/** Calls `make(0..n-1)` with `lanes` in flight. */
async function driveCalls(make: (i: number) => Promise<unknown>, n: number, lanes: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < n) await make(next++);
    }),
  );
}

/** Requests `urls` with `lanes` in flight; per-request milliseconds and the wall time. */
async function drive(urls: string[], lanes: number): Promise<{ ms: number[]; seconds: number }> {
  const ms: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < urls.length) {
        const url = urls[next++];
        const t0 = performance.now();
        const res = await get(url);
        if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
        ms.push(performance.now() - t0);
      }
    }),
  );
  return { ms: ms.sort((a, b) => a - b), seconds: (performance.now() - started) / 1000 };
}

/**
 * CPU milliseconds used so far by each of the bench database's own server processes (its connections, and the WAL
 * writer that flushes their commits), from /proc; other databases on the server do not count, nor a server on
 * another machine. Per process, so that a connection closed between two readings (a pool's idle one) does not take
 * its whole CPU off the sum (postgresCpuSince).
 */
async function postgresCpuMs(db: Db): Promise<Map<number, number>> {
  const { rows } = await sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() OR backend_type = 'walwriter'`.execute(db);
  return new Map(rows.map(({ pid }) => [pid, cpuSeconds(pid) * 1000]));
}

/** The server's CPU milliseconds since `before`: of the processes there now (a closed connection's since then is not known). */
async function postgresCpuSince(db: Db, before: Map<number, number>): Promise<number> {
  let ms = 0;
  for (const [pid, now] of await postgresCpuMs(db)) ms += now - (before.get(pid) ?? 0);
  return ms;
}

/**
 * CPU milliseconds this process's main thread has used so far (the servers' JavaScript, the HTTP client, the
 * database driver), from /proc; the rest of node's CPU is its other threads' (libuv's pool and libvips': the image
 * work and the file calls).
 */
function mainThreadCpuMs(): number {
  const fields = fs
    .readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
    .replace(/^.*\) /s, '')
    .split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

function report(name: string, r: { ms: number[]; seconds: number }): number {
  const perSecond = r.ms.length / r.seconds;
  console.log(
    `${name.padEnd(28)} ${perSecond.toFixed(1).padStart(8)}/s   p50 ${percentile(r.ms, 50).toFixed(1)} ms   p99 ${percentile(r.ms, 99).toFixed(1)} ms   (${r.ms.length} requests, ${r.seconds.toFixed(2)} s)`,
  );
  return perSecond;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-bench-imaged-'));
const bench = await freshBenchDatabase('lis_bench_imaged');
const config = parseConfig(
  {
    host: 'benchhost',
    database: { url: bench.url },
    stores: { originals: path.join(dir, 'originals'), thumbnails: path.join(dir, 'thumbnails') },
    log: { dir: path.join(dir, 'log') },
    imaged: { maxGenerations: Math.max(2, concurrency) },
  },
  {},
  dir,
);
if (!config.thumbnail.presets[PRESET]) {
  console.error(`--preset ${PRESET}: no such preset (configured: ${Object.keys(config.thumbnail.presets).join(', ')})`);
  process.exit(2);
}
const log = createLogger({ component: 'imaged', log: config.log, screen: false });
const client = createDownloadClient(config.download);
const fetcher = new SchemeFetcher(client, config);
const stops: Array<() => Promise<unknown>> = [];
try {
  console.log(
    `lis_imaged bench: ${misses} misses of preset ${PRESET} (${JSON.stringify(config.thumbnail.presets[PRESET])}) from stored 1800x1200 JPEG originals, ${concurrency} in flight; ${hits} hits through nginx; ${os.availableParallelism()} cores (shared: figures are as loaded as the machine)`,
  );
  // Live rows lacking the preset, each with its original in the store (two different pictures, alternating).
  const pictures = [await photoJpeg(1800, 1200, 1), await photoJpeg(1800, 1200, 2)];
  const { rows } = await sql<{ id: string; image_hash: string }>`
    INSERT INTO live_images (country, datasource_id, image_url, stage, state, store_host, image_data)
    SELECT 'uk', 1, 'http://bench.invalid/' || g || '.jpg', 'live', 'done', 'benchhost', '{"presets": {}}'::jsonb
      FROM generate_series(1, ${misses + concurrency}) g
    RETURNING id, image_hash`.execute(bench.db);
  rows.forEach((row, i) => {
    const file = originalPath(config, 'uk', row.image_hash);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, pictures[i % 2]);
    // A live row's folder in the thumbnail store exists: lis_thumbnaild wrote its other presets there.
    fs.mkdirSync(path.dirname(path.join(config.stores.thumbnails, thumbnailRelativePath('uk', row.image_hash, PRESET, 'jpg'))), { recursive: true });
  });
  // What lis_thumbnaild records of each original, as a live row has it.
  await sql`
    UPDATE live_images l SET image_data = jsonb_set(l.image_data, '{original}', jsonb_build_object('width', 1800, 'height', 1200, 'format', 'jpeg', 'bytes', v.bytes))
      FROM unnest(${rows.map((r) => r.id)}::bigint[], ${rows.map((_, i) => pictures[i % 2].length)}::int[]) AS v(id, bytes)
     WHERE l.id = v.id`.execute(bench.db);

  const locks = createDb(bench.url, config.imaged.maxGenerations);
  stops.push(() => locks.destroy());
  const service = new ThumbnailService({
    config,
    db: bench.db,
    locks,
    log,
    workerId: 'benchhost:imaged',
    fetcher,
    thumbnailer: createThumbnailWorker({ config, db: bench.db }),
  });
  const imaged = createImagedServer(config, service, log);
  imaged.listen(0, '127.0.0.1');
  await once(imaged, 'listening');
  stops.push(() => new Promise((resolve) => (imaged.closeAllConnections(), imaged.close(resolve))));
  const imagedUrl = `http://127.0.0.1:${(imaged.address() as AddressInfo).port}`;
  const paths = rows.map((r) => `/${thumbnailRelativePath('uk', r.image_hash, PRESET, 'jpg')}`);

  // The plain server: one request, one sharp pipeline from the original file to the preset's JPEG. With `?store`,
  // it also writes the file into a store of its own as lis_imaged does (temp file, fsync, rename), and nothing else:
  // the cost of keeping what was made, apart from the database.
  const preset = config.thumbnail.presets[PRESET];
  const details = resolveDetails({ sharpen: null, gamma: null, quality: null }, config.thumbnail.defaults);
  /** The plain resizer's one pipeline, from an original (file or bytes) to the preset's JPEG. */
  const plainJpeg = (original: string | Buffer): Promise<Buffer> => {
    let pipeline = sharp(original).resize(preset.width, preset.height, plainFit(preset)).flatten({ background: '#ffffff' });
    if (details.sharpenKernel) pipeline = pipeline.convolve(details.sharpenKernel);
    return pipeline.jpeg(jpegOptions(details.quality, preset.width * preset.height)).toBuffer();
  };
  const plainStore = path.join(dir, 'plain-store');
  const plain = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://plain');
    const row = rows[Number(url.pathname.slice(1))];
    plainJpeg(originalPath(config, 'uk', row.image_hash))
      .then(async (body) => {
        if (url.searchParams.has('store')) await writeFileAtomic(path.join(plainStore, thumbnailRelativePath('uk', row.image_hash, PRESET, 'jpg')), body);
        res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length }).end(body);
      })
      .catch((error: unknown) => res.writeHead(500).end(String(error)));
  });
  for (const row of rows) fs.mkdirSync(path.dirname(path.join(plainStore, thumbnailRelativePath('uk', row.image_hash, PRESET, 'jpg'))), { recursive: true });
  plain.listen(0, '127.0.0.1');
  await once(plain, 'listening');
  stops.push(() => new Promise((resolve) => (plain.closeAllConnections(), plain.close(resolve))));
  const plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;

  const contenders = {
    imaged: { label: 'lis_imaged misses', url: (i: number) => imagedUrl + paths[i] },
    plain: { label: 'plain sharp server misses', url: (i: number) => `${plainUrl}/${i}` },
    storing: { label: 'plain server, storing', url: (i: number) => `${plainUrl}/${i}?store` },
  };
  type Contender = keyof typeof contenders;
  const order = Object.keys(contenders) as Contender[];

  // Warm-up (sharp, the pool, JIT): the first `concurrency` rows, on each, not counted (lis_imaged makes them).
  for (const who of order)
    await drive(
      Array.from({ length: concurrency }, (_, i) => contenders[who].url(i)),
      concurrency,
    );

  const profilers = profileDir
    ? (Object.fromEntries(order.map((who) => [who, new MainThreadProfile(path.join(profileDir, who))])) as Record<Contender, MainThreadProfile>)
    : null;
  // Interleaved rounds (A B C, then C B A, ...), so that load from elsewhere on the machine falls on all alike.
  const rounds = 4;
  const runs = Object.fromEntries(order.map((who) => [who, { ms: [] as number[], seconds: 0 }])) as Record<Contender, { ms: number[]; seconds: number }>;
  // CPU per miss, of this process (the servers and the client run here) and of PostgreSQL's processes.
  const cpu = Object.fromEntries(order.map((who) => [who, { node: 0, main: 0, pg: 0 }])) as Record<Contender, { node: number; main: number; pg: number }>;
  for (let r = 0; r < rounds; r++) {
    const part = Array.from({ length: misses }, (_, i) => i + concurrency).filter((i) => i % rounds === r);
    for (const who of r % 2 === 0 ? order : [...order].reverse()) {
      const [node, main, pg] = [process.cpuUsage(), mainThreadCpuMs(), await postgresCpuMs(bench.db)];
      await profilers?.[who].start();
      const run = await drive(
        part.map((i) => contenders[who].url(i)),
        concurrency,
      );
      await profilers?.[who].pause();
      const used = process.cpuUsage(node);
      cpu[who].node += (used.user + used.system) / 1000;
      cpu[who].main += mainThreadCpuMs() - main;
      cpu[who].pg += await postgresCpuSince(bench.db, pg);
      runs[who].ms.push(...run.ms);
      runs[who].seconds += run.seconds;
    }
  }
  if (profilers) for (const who of order) console.log(`profile of the main thread during ${who}'s runs (client included): ${profilers[who].save()}`);
  if (service.generations !== rows.length) throw new Error(`expected ${rows.length} generations, saw ${service.generations}`);
  const rate = {} as Record<Contender, number>;
  for (const who of order) {
    runs[who].ms.sort((a, b) => a - b);
    rate[who] = report(contenders[who].label, runs[who]);
  }
  const perMiss = (ms: number) => (ms / misses).toFixed(2);
  console.log(
    `CPU per miss (client included): ${order.map((who) => `${who} ${perMiss(cpu[who].node)} ms in node (main thread ${perMiss(cpu[who].main)}) + ${perMiss(cpu[who].pg)} ms in PostgreSQL`).join('; ')}`,
  );
  // Steadier than misses/s on a shared machine: what a miss costs each, PostgreSQL's part included.
  const total = (who: Contender) => cpu[who].node + cpu[who].pg;
  console.log(
    `CPU per miss, plain over lis_imaged: ${(total('plain') / total('imaged')).toFixed(2)}; storing over lis_imaged: ${(total('storing') / total('imaged')).toFixed(2)}`,
  );

  // The image work alone, in this process with no HTTP, store or database: lis_imaged's (makePresets, as
  // make-preset.ts calls it for a recorded original) against the plain server's pipeline, from the same bytes in
  // memory, `concurrency` at once, in alternated pairs. What the misses' ratio lacks of this one is the rest of a
  // miss: the durable file, the record and the lock in PostgreSQL, the log line.
  const settings = { ...config.thumbnail, presets: { [PRESET]: preset }, details };
  const known = pictures.map((p) => ({ width: 1800, height: 1200, format: 'jpeg', bytes: p.length }));
  const imageWork = {
    imaged: async (i: number) => (await makePresets(pictures[i % 2], settings, { known: known[i % 2] })).presets[PRESET].files[0].data,
    plain: (i: number) => plainJpeg(pictures[i % 2]),
  };
  const size = async (jpeg: Buffer) => {
    const { width, height } = await sharp(jpeg).metadata();
    return `${width}x${height}`;
  };
  const [ours, theirs] = await Promise.all([imageWork.imaged(0).then(size), imageWork.plain(0).then(size)]);
  if (ours !== theirs) throw new Error(`the image work of lis_imaged made ${ours}, the plain server's ${theirs}: not the same thumbnail`);
  const workRatios: number[] = [];
  /** Calls per second of `make`, `concurrency` at once. */
  const workRate = async (make: (i: number) => Promise<Buffer>) => {
    const started = performance.now();
    await driveCalls(make, misses / 2, concurrency);
    return misses / 2 / ((performance.now() - started) / 1000);
  };
  for (let pair = 0; pair < 2; pair++) {
    const sides = pair % 2 === 0 ? (['imaged', 'plain'] as const) : (['plain', 'imaged'] as const);
    const rateOf = {} as Record<'imaged' | 'plain', number>;
    for (const side of sides) rateOf[side] = await workRate(imageWork[side]);
    workRatios.push(rateOf.imaged / rateOf.plain);
    console.log(
      `image work alone, pair ${pair + 1}: lis_imaged ${rateOf.imaged.toFixed(1)}/s, plain ${rateOf.plain.toFixed(1)}/s: ${(rateOf.imaged / rateOf.plain).toFixed(2)}`,
    );
  }

  // Hits: nginx serving the made files from disk (its root is the thumbnail store, as a frontend's would be after a push).
  const nginx = await startNginx(path.join(dir, 'nginx'), config.stores.thumbnails, Number(new URL(imagedUrl).port));
  stops.push(nginx.stop);
  const hitUrls = Array.from({ length: hits }, (_, i) => nginx.url + paths[i % paths.length]);
  await drive(hitUrls.slice(0, 200), 8);
  const hitRun = await drive(hitUrls, 8);
  report('nginx hits (8 in flight)', hitRun);
  if (service.generations !== rows.length) throw new Error('a hit reached lis_imaged');

  console.log(
    `aim: miss p50 under 100 ms: ${percentile(runs.imaged.ms, 50) < 100 ? 'met' : 'NOT met'}; misses/s at least the plain server's: ${rate.imaged >= rate.plain ? 'met' : 'NOT met'}`,
  );
  printRatio('imaged_vs_plain_misses', rate.imaged / rate.plain);
  printRatio('imaged_vs_plain_storing_misses', rate.imaged / rate.storing);
  printRatio('imaged_vs_plain_image_work', workRatios.reduce((a, b) => a + b, 0) / workRatios.length);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  agent.destroy();
  fetcher.destroy();
  client.destroy();
  await closeLogger(log);
  await bench.drop();
  fs.rmSync(dir, { recursive: true, force: true });
}
