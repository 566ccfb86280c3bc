// Drains a whole table through the real queue code (ClaimCursor + finishRows)
// with several workers, and reports gain + finish rows/s and claim latency
// for each window of the drain, next to a naive claim (always from the
// lowest id) drained the same way in the same run.
//   node --import tsx bench/queue-drain.ts [--rows 1000000] [--workers N] [--chunk 500] [--window 100000]
// Workers default to one per core: the database shares the cores, so more only queue for them (the
// claim's p99 doubles with twice as many) without draining faster.
import os from 'node:os';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/connect.ts';
import { claimChunk, type ClaimedRow } from '../src/queue/claim-chunk.ts';
import { ClaimCursor } from '../src/queue/claim-cursor.ts';
import { finishRows } from '../src/queue/finish-rows.ts';
import { flag, freshBenchDatabase, percentile } from './lib/bench-database.ts';

const rows = flag('rows', 1_000_000);
const workers = flag('workers', os.availableParallelism());
const chunk = flag('chunk', 500);
const windowSize = flag('window', 100_000);

type Claimer = (db: Db, workerId: string) => { next(limit: number): Promise<ClaimedRow[]> };
const cursorClaimer: Claimer = (db, workerId) => new ClaimCursor(db, { country: 'uk', stage: 'download', workerId, storeHost: '' });
const naiveClaimer: Claimer = (db, workerId) => ({
  next: (limit) => claimChunk(db, { country: 'uk', stage: 'download', workerId, storeHost: '', limit, afterId: '0' }),
});

async function drain(label: string, claimer: Claimer): Promise<number> {
  const { db, url, drop } = await freshBenchDatabase('lis_bench_queue');
  await sql`INSERT INTO live_images (country, datasource_id, image_url)
            SELECT 'uk', 1, 'http://images.example.com/uk/' || g || '.jpg' FROM generate_series(1, ${rows}) g`.execute(db);
  await sql`VACUUM ANALYZE live_images`.execute(db);
  let done = 0;
  let windowStart = performance.now();
  let windowClaims: number[] = [];
  const started = performance.now();
  console.log(`\n${label}: ${rows.toLocaleString('en-GB')} rows, ${workers} workers, chunk ${chunk}`);
  console.log('  rows done   rows/s   claim p50   claim p99');
  const report = () => {
    const sorted = windowClaims.sort((a, b) => a - b);
    const rate = windowSize / ((performance.now() - windowStart) / 1000);
    console.log(`  ${String(done).padStart(9)} ${String(Math.round(rate)).padStart(8)} ${percentile(sorted, 50).toFixed(1).padStart(8)} ms ${percentile(sorted, 99).toFixed(1).padStart(8)} ms`);
    windowClaims = [];
    windowStart = performance.now();
  };
  await Promise.all(
    Array.from({ length: workers }, async (_, i) => {
      const wdb = createDb(url, 2);
      const claim = claimer(wdb, `bench:${i}`);
      for (;;) {
        const t0 = performance.now();
        const got = await claim.next(chunk);
        windowClaims.push(performance.now() - t0);
        if (got.length === 0) break;
        await finishRows(wdb, `bench:${i}`, 'download', got.map((r) => ({ id: r.id })));
        const before = done;
        done += got.length;
        if (Math.floor(done / windowSize) > Math.floor(before / windowSize)) report();
      }
      await wdb.destroy();
    }),
  );
  const rate = rows / ((performance.now() - started) / 1000);
  console.log(`  whole drain: ${Math.round(rate).toLocaleString('en-GB')} rows/s`);
  await drop();
  return rate;
}

const ours = await drain('ClaimCursor (resumes after its last id)', cursorClaimer);
const naive = await drain('baseline: naive claim (ORDER BY id from the lowest, every time)', naiveClaimer);
console.log(`\nratio ClaimCursor / naive over the whole drain: ${(ours / naive).toFixed(2)}x`);
process.exit(0);
