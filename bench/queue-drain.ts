// Drains a whole table through the real queue code (ClaimCursor + finishRows on live_images, `workers`
// workers) and, interleaved with it window by window, a raw-SQL keyset claim+finish of a narrow table of
// the same row count in the same database: the floor of what any claim on this server costs. Window 1 of
// ours, window 1 of raw, window 2 of ours... (ABAB), so load drift on a shared machine moves both sides alike.
// Per window: rows/s of each, their ratio, the claim p50/p99 of each, and the CPU time each side's database
// connections used per row (from /proc, so only for a server on this machine): on a shared machine the rows/s
// move with the load, the CPU per row much less. Then the whole drain.
// With --prototype, a third side in each window: the narrow queue table of bench/lib/narrow-queue-prototype.ts
// (a bench-only prototype, issue 17: would a queue as narrow as the raw one reach 0.9x of it?).
//   node --import tsx bench/queue-drain.ts [--rows 1000000] [--workers N] [--chunk 500] [--window 100000] [--config FILE]
//     [--patch] [--prototype [--prototype-status wide|queue] [--prototype-fillfactor 50]] [--database lis_bench_queue] (the bench database's name, dropped and made anew: two runs at once need two)
// Workers default to one per core: the database shares the cores, so more only queue for them.
import os from 'node:os';
import { sql } from 'kysely';
import { createDb, type Db } from '../src/db/connect.ts';
import { ClaimCursor } from '../src/queue/claim-cursor.ts';
import { finishRows, type FinishedRow } from '../src/queue/finish-rows.ts';
import { argOf, benchOptions, flag, hasSwitch } from './lib/bench-args.ts';
import { freshBenchDatabase, printRatio, percentile } from './lib/bench-database.ts';
import { cpuSeconds, machineCpu, percent, stealShare } from './lib/proc-stats.ts';
import { fillNarrowQueue, finishNarrow, NarrowCursor, type NarrowOptions } from './lib/narrow-queue-prototype.ts';

benchOptions({
  rows: 'N',
  workers: 'N',
  chunk: 'N',
  window: 'N',
  patch: null,
  prototype: null,
  'prototype-status': 'wide|queue',
  'prototype-fillfactor': 'N',
  database: 'NAME',
});

const rows = flag('rows', 1_000_000);
const workers = flag('workers', os.availableParallelism());
const chunk = flag('chunk', 500);
const windowSize = flag('window', Math.max(100_000, Math.floor(rows / 10)));
const prototype = hasSwitch('prototype');
// With --patch, ours and the prototype finish each row with what a download writes (the raw keyset writes none).
const patch = hasSwitch('patch');
const finished = (id: string): FinishedRow =>
  patch
    ? { id, set: { content_hash: id.padStart(64, '0'), downloaded_at: new Date().toISOString(), original_bytes: 123_456, original_format: 'jpeg' } }
    : { id };

interface Side {
  label: string;
  done: number;
  seconds: number;
  /** CPU seconds its connections' server processes used, over its windows. */
  serverCpu: number;
  /** One claim-and-finish per call; the ids it got (none: drained). */
  workers: Array<{ db: Db; step: () => Promise<number> }>;
}

const { db, url, drop } = await freshBenchDatabase(argOf('database') ?? 'lis_bench_queue');
console.log(`filling ${rows.toLocaleString('en-GB')} rows in live_images and in a narrow table ...`);
const fillStart = performance.now();
for (let from = 1; from <= rows; from += 1_000_000) {
  const to = Math.min(rows, from + 999_999);
  await sql`INSERT INTO live_images (country, datasource_id, image_url)
            SELECT 'uk', 1, 'http://images.example.com/uk/' || g || '.jpg' FROM generate_series(${from}::int, ${to}::int) g`.execute(db);
}
await sql`CREATE TABLE bench_raw (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false, locked_by text)`.execute(db);
await sql`INSERT INTO bench_raw (id) SELECT g FROM generate_series(1, ${rows}::int) g`.execute(db);
await sql`VACUUM ANALYZE live_images`.execute(db);
await sql`VACUUM ANALYZE claimable_rows`.execute(db);
await sql`VACUUM ANALYZE bench_raw`.execute(db);
const narrow: NarrowOptions = { queueFillfactor: flag('prototype-fillfactor', 50), status: argOf('prototype-status') === 'queue' ? 'queue' : 'wide' };
if (prototype) await fillNarrowQueue(db, rows, narrow);
console.log(
  `filled in ${((performance.now() - fillStart) / 1000).toFixed(0)} s; ${workers} workers, chunk ${chunk}, windows of ${windowSize.toLocaleString('en-GB')} rows`,
);

type SideKey = 'ours' | 'raw' | 'proto';
const claimTimes: Record<SideKey, number[]> = { ours: [], raw: [], proto: [] };

/**
 * A side whose workers claim through a cursor and finish what it gave: ours (ClaimCursor + finishRows) and the
 * prototype's. A finish that moves fewer rows than were claimed stops the bench: the drain would count rows it never moved.
 */
function cursorSide(
  key: 'ours' | 'proto',
  label: string,
  cursorOf: (db: Db, workerId: string) => { next(limit: number): Promise<Array<{ id: string }>> },
  finish: (db: Db, workerId: string, rows: Array<{ id: string }>) => Promise<number>,
): Side {
  return {
    label,
    done: 0,
    seconds: 0,
    serverCpu: 0,
    workers: Array.from({ length: workers }, (_, i) => {
      const wdb = createDb(url, 2);
      const workerId = `bench:${i}`;
      const cursor = cursorOf(wdb, workerId);
      return {
        db: wdb,
        step: async () => {
          const t0 = performance.now();
          const got = await cursor.next(chunk);
          claimTimes[key].push(performance.now() - t0);
          if (got.length && (await finish(wdb, workerId, got)) !== got.length) throw new Error(`bench: ${label} moved fewer rows than were claimed`);
          return got.length;
        },
      };
    }),
  };
}

function ourSide(): Side {
  return cursorSide(
    'ours',
    'ClaimCursor + finishRows (live_images)',
    (db, workerId) => new ClaimCursor(db, { country: 'uk', stage: 'download', workerId, storeHost: '' }),
    (db, workerId, got) =>
      finishRows(
        db,
        workerId,
        'download',
        got.map((r) => finished(r.id)),
      ),
  );
}

/** The floor: keyset claim (after this worker's last id, SKIP LOCKED) and finish by primary key, on three columns. */
function rawSide(): Side {
  return {
    label: 'raw SQL keyset claim+finish (narrow table)',
    done: 0,
    seconds: 0,
    serverCpu: 0,
    workers: Array.from({ length: workers }, (_, i) => {
      const wdb = createDb(url, 2);
      let after = '0';
      return {
        db: wdb,
        step: async () => {
          const t0 = performance.now();
          const { rows: got } = await sql<{ id: string }>`
            UPDATE bench_raw b SET locked_by = ${`bench:${i}`}
              FROM (SELECT id FROM bench_raw WHERE id > ${after}::bigint AND NOT done AND locked_by IS NULL
                     ORDER BY id LIMIT ${chunk} FOR UPDATE SKIP LOCKED) p
             WHERE b.id = p.id RETURNING b.id`.execute(wdb);
          claimTimes.raw.push(performance.now() - t0);
          if (got.length) {
            const ids = got.map((r) => r.id);
            after = ids.reduce((a, b) => ((a.length - b.length || (a < b ? -1 : 1)) > 0 ? a : b));
            await sql`UPDATE bench_raw SET done = true, locked_by = NULL WHERE id = ANY(${ids}::bigint[])`.execute(wdb);
          }
          return got.length;
        },
      };
    }),
  };
}

/** The bench-only narrow queue: NarrowCursor + finishNarrow on proto_queue and proto_wide. */
function prototypeSide(): Side {
  return cursorSide(
    'proto',
    'narrow queue prototype (proto_queue + proto_wide)',
    (db, workerId) => new NarrowCursor(db, { country: 'uk', stage: 'download', workerId, storeHost: '' }),
    (db, workerId, got) =>
      finishNarrow(
        db,
        workerId,
        'download',
        got.map((r) => finished(r.id)),
        narrow.status,
      ),
  );
}

/**
 * CPU seconds used so far by each server process of a connection to the bench database but `db`'s own (0 when
 * the server is on another machine). Only one side runs at a time, so what they add up in a window is its.
 */
async function serverCpuByPid(): Promise<Map<number, number>> {
  const { rows } = await sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`.execute(db);
  return new Map(rows.map(({ pid }) => [pid, cpuSeconds(pid)]));
}

/** Runs one side until `until` rows are done (or it is drained); rows/s, claim p50/p99 and server CPU µs a row of the window. */
async function window(side: Side, key: SideKey, until: number): Promise<{ rate: number; p50: number; p99: number; rows: number; cpuPerRow: number }> {
  claimTimes[key] = [];
  const before = side.done;
  const cpuBefore = await serverCpuByPid();
  const t0 = performance.now();
  await Promise.all(
    side.workers.map(async (w) => {
      while (side.done < until) {
        const n = await w.step();
        if (n === 0) break;
        side.done += n;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  side.seconds += seconds;
  // A connection the pool opened during the window started at 0; one it closed before the end is not counted.
  let cpu = 0;
  for (const [pid, used] of await serverCpuByPid()) cpu += used - (cpuBefore.get(pid) ?? 0);
  side.serverCpu += cpu;
  const sorted = claimTimes[key].sort((a, b) => a - b);
  const n = side.done - before;
  return { rate: n / seconds, p50: percentile(sorted, 50), p99: percentile(sorted, 99), rows: n, cpuPerRow: (cpu / n) * 1e6 };
}

const ours = ourSide();
const raw = rawSide();
const proto = prototype ? prototypeSide() : undefined;
console.log('\n  window end   ours rows/s   raw rows/s   ratio   ours claim p50 / p99     raw claim p50 / p99   server CPU µs/row ours / raw   steal');
if (proto) console.log('             proto rows/s            proto/raw  proto claim p50 / p99                          server CPU µs/row proto');
for (let end = windowSize; ; end += windowSize) {
  const target = Math.min(end, rows);
  // The host's steal over the window's sides: on a shared host, a window's rows/s and p99 follow it.
  const machineStart = machineCpu();
  const a = await window(ours, 'ours', target);
  const b = await window(raw, 'raw', target);
  const c = proto ? await window(proto, 'proto', target) : undefined;
  if (a.rows === 0 && b.rows === 0 && !c?.rows) break;
  const steal = stealShare(machineStart, machineCpu());
  console.log(
    `  ${String(target).padStart(10)} ${Math.round(a.rate).toString().padStart(13)} ${Math.round(b.rate).toString().padStart(12)} ${(a.rate / b.rate).toFixed(2).padStart(7)}   ${a.p50.toFixed(1).padStart(6)} / ${a.p99.toFixed(1).padStart(6)} ms    ${b.p50.toFixed(1).padStart(6)} / ${b.p99.toFixed(1).padStart(6)} ms   ${a.cpuPerRow.toFixed(1).padStart(6)} / ${b.cpuPerRow.toFixed(1).padStart(5)}   ${percent(steal).padStart(5)}`,
  );
  if (c)
    console.log(
      `  ${''.padStart(10)} ${Math.round(c.rate).toString().padStart(13)} ${''.padStart(12)} ${(c.rate / b.rate).toFixed(2).padStart(7)}   ${c.p50.toFixed(1).padStart(6)} / ${c.p99.toFixed(1).padStart(6)} ms    ${''.padStart(20)}   ${c.cpuPerRow.toFixed(1).padStart(6)}`,
    );
  if (target >= rows) break;
}
const rate = (side: Side) => side.done / side.seconds;
const cpuPerRow = (side: Side) => (side.serverCpu / side.done) * 1e6;
console.log(
  `\n  whole drain: ours ${Math.round(rate(ours)).toLocaleString('en-GB')} rows/s (${ours.done} rows), raw ${Math.round(rate(raw)).toLocaleString('en-GB')} rows/s (${raw.done} rows)` +
    (proto ? `, prototype ${Math.round(rate(proto)).toLocaleString('en-GB')} rows/s (${proto.done} rows)` : ''),
);
if (cpuPerRow(ours) > 0 && cpuPerRow(raw) > 0) {
  console.log(
    `  server CPU a row: ours ${cpuPerRow(ours).toFixed(1)} µs, raw ${cpuPerRow(raw).toFixed(1)} µs (raw / ours ${(cpuPerRow(raw) / cpuPerRow(ours)).toFixed(2)})`,
  );
  if (proto) console.log(`  server CPU a row: prototype ${cpuPerRow(proto).toFixed(1)} µs (raw / prototype ${(cpuPerRow(raw) / cpuPerRow(proto)).toFixed(2)})`);
}
console.log('');
printRatio('queue drain ClaimCursor / raw keyset claim+finish', rate(ours) / rate(raw));
if (proto) printRatio('queue drain narrow prototype / raw keyset claim+finish', rate(proto) / rate(raw));
// After the figures: an autovacuum still working on the database can make dropping it fail.
await Promise.all([ours, raw, ...(proto ? [proto] : [])].flatMap((side) => side.workers).map((w) => w.db.destroy()));
await drop();
process.exit(0);
