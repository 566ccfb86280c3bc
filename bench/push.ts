// Push throughput: rows of three thumbnails each (5-60 KB) pushed by lis_pusherd's code path (claim,
// one rsync per frontend per chunk, records, finish) to three local rsync daemons, against the real
// alternative measured in the same run and interleaved with it (pusher, baseline, baseline, pusher...):
// plain rsync, one `--files-from` list per chunk per frontend, the three frontends in parallel, the same
// files (each pair has its own rows and files, so neither side finds the other's files already there).
//   node --import tsx bench/push.ts [--rows 2000] [--chunk 500] [--pairs 2] [--config FILE]
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { parseConfig } from '../src/config/load-config.ts';
import { runDaemon } from '../src/daemon/run-daemon.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { createPusher } from '../src/push/pusherd-main.ts';
import type { ImageData } from '../src/store/image-data.ts';
import { thumbnailRelativePath } from '../src/store/store-layout.ts';
import { RsyncDaemon } from '../test/helpers/rsync-daemons.ts';
import { benchOptions, flag } from './lib/bench-args.ts';
import { freshBenchDatabase, geomean, printRatio } from './lib/bench-database.ts';

benchOptions({ rows: 'N', chunk: 'N', pairs: 'N' });

const rowCount = flag('rows', 2000);
const chunkSize = flag('chunk', 500);
const pairs = flag('pairs', 2);
/** A realistic mix: sizes in bytes, drawn uniformly within each preset's range. */
const PRESETS: Record<string, [number, number]> = { small: [5_000, 12_000], medium: [15_000, 30_000], large: [35_000, 60_000] };

function run(command: string, args: string[], cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-bench-push-'));
const { db, url, drop } = await freshBenchDatabase('lis_bench_push');
const daemons = await Promise.all(['n1', 'n2', 'n3'].map((n) => RsyncDaemon.start(path.join(dir, n))));
try {
  const config = parseConfig(
    {
      host: 'bench',
      database: { url },
      stores: { thumbnails: path.join(dir, 'store'), originals: path.join(dir, 'originals') },
      log: { dir: path.join(dir, 'log') },
    },
    {},
    dir,
  );

  /** One pair's rows, waiting in the push stage, and their files in the store's layout. */
  async function makeRows(pair: number): Promise<Array<{ rel: string; bytes: number }>> {
    // Thumbnails: random bytes (rsync moves bytes; no -z, so the content does not matter) in the store's layout.
    const { rows } = await sql<{ id: string; image_hash: string }>`
    INSERT INTO live_images (country, datasource_id, image_url, stage, store_host)
    SELECT 'uk', 1, 'http://bench.example.com/' || ${String(pair)}::text || '/' || g || '.jpg', 'push', 'bench' FROM generate_series(1, ${rowCount}) g
    RETURNING id, image_hash`.execute(db);
    const files: Array<{ rel: string; bytes: number }> = [];
    const ids: string[] = [];
    const datas: string[] = [];
    for (const row of rows) {
      const presets: ImageData['presets'] = {};
      for (const [preset, [min, max]] of Object.entries(PRESETS)) {
        const rel = thumbnailRelativePath('uk', row.image_hash, preset, 'jpg');
        const bytes = min + crypto.randomInt(max - min);
        fs.mkdirSync(path.join(config.stores.thumbnails, path.dirname(rel)), { recursive: true });
        fs.writeFileSync(path.join(config.stores.thumbnails, rel), crypto.randomBytes(bytes));
        presets[preset] = { width: 100, height: 75, bytes, path: rel };
        files.push({ rel, bytes });
      }
      ids.push(row.id);
      datas.push(JSON.stringify({ original: { width: 1, height: 1, format: 'jpeg', bytes: 1 }, contentHash: row.image_hash, presets }));
    }
    await sql`UPDATE live_images li SET image_data = v.d FROM unnest(${ids}::bigint[], ${datas}::jsonb[]) AS v(id, d) WHERE li.id = v.id`.execute(db);
    return files;
  }
  for (const [i, d] of daemons.entries()) await addFrontend(db, `n${i + 1}`, d.url('pusher'));
  console.log(`${pairs} pairs of ${rowCount} rows (${rowCount * 3} files each) to 3 rsync daemons on 127.0.0.1; ${os.cpus().length} cores`);

  const report = (label: string, fileCount: number, bytes: number, seconds: number) => {
    const fps = fileCount / seconds;
    console.log(
      `  ${label.padEnd(60)} ${fps.toFixed(0).padStart(7)} files/s  ${((bytes * 3) / 1e6 / seconds).toFixed(1).padStart(6)} MB/s to 3 frontends  (${seconds.toFixed(1)} s)`,
    );
    return fps;
  };

  // The pusher: the real worker and runner, by hand, as `lis_pusherd --country uk --chunk-size N` runs.
  async function pusherRun(files: Array<{ rel: string; bytes: number }>): Promise<number> {
    const log = createLogger({ component: 'pusherd', log: config.log, screen: false, country: 'uk' });
    const controller = new AbortController();
    const t0 = performance.now();
    const worker = await createPusher({ config, db, log, country: 'uk', chunkSize, service: false, signal: controller.signal });
    const totals = await runDaemon(worker, {
      config,
      db,
      databaseUrl: url,
      log,
      country: 'uk',
      chunkSize,
      service: false,
      signal: controller.signal,
      workerId: 'bench:1',
    });
    const seconds = (performance.now() - t0) / 1000;
    await closeLogger(log);
    if (totals.done !== rowCount) throw new Error(`only ${totals.done} of ${rowCount} rows went live; see ${config.log.dir}`);
    return report(
      `lis_pusherd (chunk ${chunkSize}, one rsync per frontend)`,
      files.length,
      files.reduce((s, f) => s + f.bytes, 0),
      seconds,
    );
  }

  // Baseline: what one would write by hand: per chunk of rows, one plain rsync per frontend with the chunk's
  // files as a --files-from list, the three frontends in parallel, chunk after chunk.
  async function baselineRun(files: Array<{ rel: string; bytes: number }>, pair: number): Promise<number> {
    const perChunk = chunkSize * Object.keys(PRESETS).length;
    const t0 = performance.now();
    for (let i = 0; i < files.length; i += perChunk) {
      const list = path.join(dir, `files-${pair}-${i}.txt`);
      fs.writeFileSync(
        list,
        files
          .slice(i, i + perChunk)
          .map((f) => f.rel)
          .join('\n') + '\n',
      );
      await Promise.all(
        daemons.map(async (d) => {
          const { code, stderr } = await run(
            'rsync',
            ['--relative', '--times', '--perms', '--chmod=D755,F644', '--mkpath', '--timeout=60', `--files-from=${list}`, '.', `${d.url('baseline')}/`],
            config.stores.thumbnails,
          );
          if (code !== 0) throw new Error(`baseline rsync failed: ${stderr}`);
        }),
      );
    }
    const seconds = (performance.now() - t0) / 1000;
    return report(
      `baseline: plain rsync, one --files-from per chunk per frontend`,
      files.length,
      files.reduce((s, f) => s + f.bytes, 0),
      seconds,
    );
  }

  const ratios: number[] = [];
  for (let pair = 1; pair <= pairs; pair++) {
    const files = await makeRows(pair);
    console.log(`pair ${pair}: ${files.length} files, ${(files.reduce((s, f) => s + f.bytes, 0) / 1e6).toFixed(1)} MB`);
    // ABBA: the pusher first in odd pairs, the baseline first in even ones.
    let pusher: number, baseline: number;
    if (pair % 2 === 1) {
      pusher = await pusherRun(files);
      baseline = await baselineRun(files, pair);
    } else {
      baseline = await baselineRun(files, pair);
      pusher = await pusherRun(files);
    }
    ratios.push(pusher / baseline);
    console.log(`  pair ${pair}: pusher / plain rsync per chunk = ${(pusher / baseline).toFixed(2)}`);
  }
  console.log('');
  printRatio('push lis_pusherd / plain rsync per chunk per frontend', geomean(ratios));
} finally {
  await Promise.all(daemons.map((d) => d.stop()));
  await drop();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
