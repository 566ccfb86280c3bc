// ETL intake speed: `lis enqueue`'s code path (parse + batched upsert) into a table that already holds
// --existing rows, for new URLs and for known ones, against a true ceiling measured in the same run and
// interleaved with it (ceiling, enqueue, ceiling, enqueue...): the same URLs sent as bare multi-row INSERTs
// (unnest of 5,000-row arrays, two in flight, as the enqueue sends them) into an EMPTY table with the same
// columns, defaults and indexes (CREATE TABLE ... (LIKE live_images INCLUDING ALL): no triggers, no
// conflict handling, no parsing). The ceiling always runs first in a pair, into a table emptied for it.
//   node --import tsx bench/enqueue.ts [--existing 1000000] [--urls 200000] [--pairs 2] [--config FILE]
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import type { Db } from '../src/db/connect.ts';
import { enqueueUrlStream } from '../src/intake/enqueue-urls.ts';
import { benchOptions, flag } from './lib/bench-args.ts';
import { freshBenchDatabase, geomean, printRatio } from './lib/bench-database.ts';

benchOptions({ existing: 'N', urls: 'N', pairs: 'N' });

const existing = flag('existing', 1_000_000);
const urls = flag('urls', 200_000);
const pairs = flag('pairs', 2);
const BATCH = 5000;
const { db, drop } = await freshBenchDatabase('lis_bench_enqueue');

await sql`CREATE TABLE bench_ceiling (LIKE live_images INCLUDING ALL)`.execute(db);
await sql`INSERT INTO live_images (country, datasource_id, image_url)
          SELECT 'uk', 1, 'http://old.example.com/uk/' || g || '.jpg' FROM generate_series(1, ${existing}) g`.execute(db);
await sql`VACUUM ANALYZE live_images`.execute(db);

function lines(prefix: string, n: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < n; i += 1000) {
        let block = '';
        for (let j = i; j < Math.min(n, i + 1000); j++) block += `${prefix}${j}.jpg\n`;
        yield block;
      }
    })(),
  );
}

/** The ceiling: the same URLs, already parsed, as bare multi-row INSERTs into the empty copy. */
async function ceilingInsert(target: Db, prefix: string): Promise<void> {
  const inFlight = new Set<Promise<unknown>>();
  for (let i = 0; i < urls; i += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, urls - i) }, (_, k) => `${prefix}${i + k}.jpg`);
    const task = sql`INSERT INTO bench_ceiling (country, datasource_id, image_url)
                     SELECT 'uk', 16, u FROM unnest(${batch}::text[]) AS u`.execute(target);
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task)).catch(() => {});
    if (inFlight.size >= 2) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}

async function timed(label: string, fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  const rate = urls / ((performance.now() - t0) / 1000);
  console.log(`  ${label.padEnd(66)} ${Math.round(rate).toLocaleString('en-GB').padStart(9)} URLs/s`);
  return rate;
}

console.log(`table holds ${existing.toLocaleString('en-GB')} rows; ${urls.toLocaleString('en-GB')} URLs each run; ${pairs} pairs`);
const options = { country: 'uk', datasourceId: 16, maxUrlLength: 2048, batchSize: BATCH };
const newRatios: number[] = [];
const knownRatios: number[] = [];
for (let pair = 1; pair <= pairs; pair++) {
  console.log(`pair ${pair}`);
  await sql`TRUNCATE bench_ceiling`.execute(db);
  const ceiling = await timed('ceiling: bare multi-row INSERT into an empty, index-equal table', () =>
    ceilingInsert(db, `http://ceiling${pair}.example.com/uk/`),
  );
  const prefix = `http://new${pair}.example.com/uk/`;
  const fresh = await timed('lis enqueue code path, new URLs', () => enqueueUrlStream(db, lines(prefix, urls), options));
  const known = await timed('lis enqueue code path, known URLs (last_seen refresh)', () => enqueueUrlStream(db, lines(prefix, urls), options));
  newRatios.push(fresh / ceiling);
  knownRatios.push(known / ceiling);
  console.log(`  pair ${pair}: new / ceiling ${(fresh / ceiling).toFixed(2)}, known / ceiling ${(known / ceiling).toFixed(2)}`);
}
await drop();
console.log('');
printRatio('enqueue new URLs / ceiling', geomean(newRatios));
printRatio('enqueue known URLs / ceiling', geomean(knownRatios));
process.exit(0);
