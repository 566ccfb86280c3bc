// The frontend lag (`lis frontend list`, lis_metrics, the status page, the pusher's lis_frontend_lag_rows): its
// read, against the per-frontend form it replaced (two anti-joins of the rows per frontend, see
// test/helpers/frontend-lag-reference.ts), on the same rows, interleaved (old, new, old, new...), for every
// country (the status page) and for uk alone (the pusher's metric). Rows of every kind the lag tells apart
// (test/helpers/lag-mix.ts), nine tenths uk; --frontends of them, in turn one with every record, one with gaps,
// one with older versions. Both answers are checked equal first. Prints the median of --runs per side.
//   node --import tsx bench/frontend-lag.ts [--rows 200000] [--frontends 3] [--runs 3] [--config FILE]
import assert from 'node:assert/strict';
import os from 'node:os';
import { sql } from 'kysely';
import { frontendLag } from '../src/push/frontend-lag.ts';
import { frontendLagPerFrontend } from '../test/helpers/frontend-lag-reference.ts';
import { fillLagMix } from '../test/helpers/lag-mix.ts';
import { benchOptions, flag } from './lib/bench-args.ts';
import { freshBenchDatabase, printRatio, settleMachine } from './lib/bench-database.ts';

benchOptions({ rows: 'N', runs: 'N', frontends: 'N' });

const rows = flag('rows', 200_000);
const runs = flag('runs', 3);
const frontends = flag('frontends', 3);
const KINDS = ['complete', 'gaps', 'stale'] as const;
const { db, drop } = await freshBenchDatabase('lis_bench_frontend_lag');
try {
  const fillStart = performance.now();
  await fillLagMix(
    db,
    rows,
    Array.from({ length: frontends }, (_, i) => ({ name: `n${i + 1}`, kind: KINDS[i % KINDS.length] })),
  );
  await sql`VACUUM ANALYZE live_images`.execute(db);
  await sql`VACUUM ANALYZE frontend_pushes`.execute(db);
  const records = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM frontend_pushes`.execute(db)).rows[0].n);
  console.log(
    `${rows} rows, ${records} push records, ${frontends} frontends (filled in ${((performance.now() - fillStart) / 1000).toFixed(1)} s); ${os.cpus().length} cores`,
  );

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const country of [undefined, 'uk']) {
    const scope = country ?? 'every country';
    assert.deepEqual(await frontendLag(db, { country }), await frontendLagPerFrontend(db, { country }), `${scope}: the same answer`);
    const times: { old: number[]; new: number[] } = { old: [], new: [] };
    for (let i = 0; i < runs; i++) {
      for (const side of ['old', 'new'] as const) {
        await settleMachine();
        const start = performance.now();
        await (side === 'old' ? frontendLagPerFrontend : frontendLag)(db, { country });
        times[side].push(performance.now() - start);
      }
    }
    const [old, now] = [median(times.old), median(times.new)];
    console.log(
      `${scope}: per frontend ${(old / 1000).toFixed(2)} s, one pass ${(now / 1000).toFixed(2)} s (medians of ${runs}; runs ${times.old.map((t) => (t / 1000).toFixed(2)).join(' ')} / ${times.new.map((t) => (t / 1000).toFixed(2)).join(' ')})`,
    );
    printRatio(`frontend lag ${scope}: per frontend / one pass`, old / now);
  }
} finally {
  await drop();
}
