// ETL intake speed: `lis enqueue`'s code path (parse + batched upsert) into a
// table that already holds --existing rows, for new URLs and for known ones,
// against the database's own ceiling measured in the same run (a server-side
// INSERT ... SELECT of the same rows, with no parsing and no round trips).
//   node --import tsx bench/enqueue.ts [--existing 1000000] [--urls 200000]
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import { enqueueUrlStream } from '../src/intake/enqueue-urls.ts';
import { flag, freshBenchDatabase } from './lib/bench-database.ts';

const existing = flag('existing', 1_000_000);
const urls = flag('urls', 200_000);
const { db, drop } = await freshBenchDatabase('lis_bench_enqueue');

await sql`INSERT INTO live_images (country, datasource_id, image_url)
          SELECT 'uk', 1, 'http://old.example.com/uk/' || g || '.jpg' FROM generate_series(1, ${existing}) g`.execute(db);
await sql`VACUUM ANALYZE live_images`.execute(db);

function lines(prefix: string, n: number): Readable {
  return Readable.from((function* () {
    for (let i = 0; i < n; i += 1000) {
      let block = '';
      for (let j = i; j < Math.min(n, i + 1000); j++) block += `${prefix}${j}.jpg\n`;
      yield block;
    }
  })());
}

async function timed(label: string, fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  const rate = urls / ((performance.now() - t0) / 1000);
  console.log(`${label.padEnd(58)} ${Math.round(rate).toLocaleString('en-GB').padStart(9)} URLs/s`);
  return rate;
}

console.log(`table holds ${existing.toLocaleString('en-GB')} rows; ${urls.toLocaleString('en-GB')} URLs each run`);
const options = { country: 'uk', datasourceId: 16, maxUrlLength: 2048, batchSize: 5000 };
const fresh = await timed('lis enqueue code path, new URLs', () => enqueueUrlStream(db, lines('http://new.example.com/uk/', urls), options));
await timed('lis enqueue code path, known URLs (last_seen refresh)', () => enqueueUrlStream(db, lines('http://new.example.com/uk/', urls), options));
const ceiling = await timed('baseline: server-side INSERT ... SELECT, new URLs', () =>
  sql`INSERT INTO live_images (country, datasource_id, image_url)
      SELECT 'uk', 16, 'http://ceiling.example.com/uk/' || g || '.jpg' FROM generate_series(1, ${urls}) g`.execute(db));
console.log(`ratio enqueue / server-side ceiling: ${(fresh / ceiling).toFixed(2)}`);
await drop();
process.exit(0);
