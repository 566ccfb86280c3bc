import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { sampleQueue } from '../src/manager/run-check.ts';
import type { MetricsReport } from '../src/metrics/collect-report.ts';
import { frontendLag } from '../src/push/frontend-lag.ts';
import { isServed } from '../src/push/push-records.ts';
import { datasourceFailures, queueDepth } from '../src/queue/queue-figures.ts';
import { cachedStoreDiskUse, storeDiskUse } from '../src/store/store-disk-use.ts';
import { insertUrls } from './helpers/rows.ts';
import { frontendLagPerFrontend } from './helpers/frontend-lag-reference.ts';
import { fillLagMix } from './helpers/lag-mix.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { readLogIfAny } from './helpers/log-files.ts';

/** The value of a Prometheus sample whose labels include `labels`, whatever their order; NaN when absent. */
function sample(body: string, name: string, labels: Record<string, string>): number {
  for (const line of body.split('\n')) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return NaN;
}

describe('metrics', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase({ overrides: { queue: { heartbeatSeconds: 0.5 } } })));
  afterEach(async () => t.drop());

  it('every daemon serves Prometheus metrics: rows done and failed by reason, latencies, queue depth, heartbeat', async function () {
    this.timeout(60_000);
    await insertUrls(t.db, 'uk', 30);
    await insertUrls(t.db, 'uk', 4, { prefix: 'http://images.example.com/bad/' });
    const daemon = spawnTs('test/fixtures/test-daemon.ts', ['--country', 'uk', '--config', t.writeConfig(), '--service', '--metrics-port', '0']);
    try {
      // A service logs to its files only.
      const logFile = path.join(t.config.log.dir, 'testd.uk.log');
      // Up to the text after the URL: a line read while it is being written would give a URL cut short.
      const announced = () => /Prometheus metrics at (http:\S+) \(health at/.exec(readLogIfAny(logFile));
      await waitFor(() => announced() !== null, 20_000, 'the exporter');
      const url = announced()![1];
      let body = '';
      await waitFor(
        async () => {
          body = await (await fetch(url)).text();
          return (
            /lis_rows_done_total\{[^}]*stage="download"[^}]*\} 30/.test(body) &&
            /lis_rows_failed_total\{[^}]*\} 4/.test(body) &&
            /lis_worker_heartbeat_timestamp_seconds\{[^}]*\} [1-9]/.test(body) &&
            // The claim after the chunk (empty) comes only once the chunk's results are written: a scrape between
            // the two has the rows done and the queue read, but one claim.
            sample(body, 'lis_claim_seconds_count', { stage: 'download' }) >= 2 &&
            // Queue figures are cached for 2 s: wait for a read after the chunk.
            sample(body, 'lis_queue_rows', { stage: 'thumbnail', kind: 'due' }) === 30
          );
        },
        20_000,
        'the counters',
      );
      assert.equal(sample(body, 'lis_rows_failed_total', { stage: 'download', reason: 'http_404', retryable: 'false', component: 'testd', country: 'uk' }), 4);
      assert.equal(sample(body, 'lis_row_seconds_count', { stage: 'download' }), 34);
      assert.equal(sample(body, 'lis_claim_seconds_count', { stage: 'download' }) >= 2, true);
      assert.equal(sample(body, 'lis_chunk_rows_sum', { stage: 'download' }), 34);
      assert.equal(sample(body, 'lis_queue_rows', { stage: 'thumbnail', kind: 'due' }), 30);
      assert.equal(sample(body, 'lis_queue_oldest_seconds', { stage: 'thumbnail' }) >= 0, true);
      assert.equal((await fetch(url.replace('/metrics', '/other'))).status, 404);
      // A scrape job's `params` come as a query string: still the metrics, and the health.
      assert.match(await (await fetch(`${url}?module=imagesys`)).text(), /lis_rows_done_total/);
      assert.equal((await fetch(url.replace('/metrics', '/health?probe=1'))).status, 200);
    } finally {
      daemon.child.kill('SIGTERM');
      assert.equal((await daemon.exited).code, 0);
    }
  });

  it("a country's frontend figures are its own: last push and last error of its rows, not another country's", async () => {
    await t.db.insertInto('frontends').values({ name: 'n1', target: 'rsync://n1/thumbs', enabled: true }).execute();
    // uk's pushes to n1 failed since yesterday; fr's went through an hour ago.
    await sql`INSERT INTO frontend_pushes (frontend, country, image_hash, pushed_at, last_error, updated_at)
              VALUES ('n1', 'uk', ${'a'.repeat(32)}, now() - interval '2 days', NULL, now() - interval '2 days'),
                     ('n1', 'uk', ${'b'.repeat(32)}, NULL, 'rsync exit 10: Connection refused', now() - interval '1 day'),
                     ('n1', 'fr', ${'c'.repeat(32)}, now() - interval '1 hour', NULL, now() - interval '1 hour')`.execute(t.db);
    const of = async (country?: string) => (await frontendLag(t.db, { country }))[0];
    const uk = await of('uk');
    assert.equal(uk.lastPushedAt!.getTime() < Date.now() - 36 * 3600_000, true, `uk last pushed 2 days ago, not ${uk.lastPushedAt!.toISOString()}`);
    assert.match(uk.lastError ?? '', /Connection refused/);
    const fr = await of('fr');
    assert.equal(fr.lastPushedAt!.getTime() > Date.now() - 2 * 3600_000, true);
    assert.equal(fr.lastError, null);
    const all = await of();
    assert.equal(all.lastPushedAt!.getTime(), fr.lastPushedAt!.getTime(), 'every country: the newest push of any');
  });

  it('the frontend lag, counted for every frontend in one pass, is what the per-frontend anti-joins said, on every kind of row and record', async () => {
    // Rows live, from before live_data, new and reworked in push, reworked elsewhere, expired, failed, of no
    // presets, in uk and fr; frontends with every record, with gaps and failed first pushes, with older versions
    // and failed later pushes, disabled, and added after the rows went live (no records).
    await fillLagMix(t.db, 2000, [
      { name: 'n1', kind: 'complete' },
      { name: 'n2', kind: 'gaps' },
      { name: 'n3', kind: 'stale' },
      { name: 'off', kind: 'stale', enabled: false },
      { name: 'z-new', kind: 'none' },
    ]);
    for (const country of [undefined, 'uk', 'fr', 'de']) {
      assert.deepEqual(await frontendLag(t.db, { country }), await frontendLagPerFrontend(t.db, { country }), `country ${country ?? 'all'}`);
    }
    // The mix holds what it says: every figure takes more than one value.
    const all = await frontendLag(t.db);
    assert.deepEqual(
      all.map((l) => [l.frontend, l.enabled, l.live > 0, l.push > 0, l.lastPushedAt !== null, l.lastError !== null]),
      [
        ['n1', true, false, true, true, false],
        ['n2', true, true, true, true, false],
        ['n3', true, true, true, true, true],
        ['off', false, true, true, true, true],
        ['z-new', true, true, true, false, false],
      ],
    );
    const znew = all.find((l) => l.frontend === 'z-new')!;
    const served = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM live_images li WHERE ${isServed('li')}`.execute(t.db)).rows[0].n);
    assert.equal(znew.live, served, 'a frontend with no records lacks every row served');

    // One statement records a chunk at one updated_at: of its records, the failure is the frontend's last error.
    const chunk = sql`SELECT image_hash FROM frontend_pushes WHERE frontend = 'n1' AND country = 'uk' ORDER BY image_hash LIMIT 3`;
    await sql`UPDATE frontend_pushes SET updated_at = now() + interval '1 minute'
               WHERE frontend = 'n1' AND country = 'uk' AND image_hash IN (${chunk})`.execute(t.db);
    await sql`UPDATE frontend_pushes SET last_error = 'thumbnail missing from the store'
               WHERE frontend = 'n1' AND country = 'uk' AND image_hash = (SELECT max(image_hash) FROM (${chunk}) c)`.execute(t.db);
    assert.equal((await frontendLag(t.db, { country: 'uk' }))[0].lastError, 'thumbnail missing from the store');
  });

  it('lis_metrics reports rows by state, the queue and its age, throughput, datasource failures and disk use', async function () {
    this.timeout(60_000);
    await insertUrls(t.db, 'uk', 20, { datasourceId: 3 });
    await insertUrls(t.db, 'uk', 5, { datasourceId: 4, prefix: 'http://images.example.com/bad/' });
    await insertUrls(t.db, 'fr', 7, { datasourceId: 3 });
    await sql`UPDATE live_images SET updated_at = now() - interval '90 seconds' WHERE country = 'fr'`.execute(t.db);
    const config = t.writeConfig();
    const daemon = spawnTs('test/fixtures/test-daemon.ts', ['--country', 'uk', '--config', config]);
    assert.equal((await daemon.exited).code, 0);
    const run = spawnTs('bin/lis_metrics', ['--json', '--config', config]);
    assert.equal((await run.exited).code, 0, run.output());
    const report = JSON.parse(run.output()) as MetricsReport;
    assert.deepEqual(report.rows, [
      { country: 'fr', stage: 'download', state: 'waiting', rows: 7 },
      { country: 'uk', stage: 'download', state: 'failed', rows: 5 },
      { country: 'uk', stage: 'thumbnail', state: 'waiting', rows: 20 },
    ]);
    const fr = report.queue.find((q) => q.country === 'fr');
    assert.ok(fr, 'a queue line for fr');
    assert.equal(fr.due, 7);
    assert.ok(fr.oldestSeconds >= 89, 'the oldest row waited 90 s');
    assert.deepEqual(report.throughput.lastHour, [{ component: 'testd', done: 20, failed: 5, perMinute: 0.3 }]);
    assert.deepEqual(
      report.datasources.map((d) => [d.datasourceId, d.tries, d.failed, d.rate]),
      [
        [4, 5, 5, 1],
        [3, 20, 0, 0],
      ],
    );
    assert.deepEqual(report.datasources[0].reasons, [{ reason: 'http_404', tries: 5 }]);
    assert.ok('originals' in report.disk);
    const text = spawnTs('bin/lis_metrics', ['--country', 'uk', '--config', config]);
    assert.equal((await text.exited).code, 0);
    assert.match(text.output(), /Queue \(waiting rows\)\ncountry\s+stage\s+due now/);
    assert.match(text.output(), /uk\s+4\s+yes\s+5\s+5\s+100\.0%\s+0\s+http_404 5/);
  });

  it('measures store disk use, and the status page reads it from a cache rather than walking the store each time', async () => {
    fs.mkdirSync(t.config.stores.originals, { recursive: true });
    const first = await cachedStoreDiskUse(t.config);
    fs.writeFileSync(path.join(t.config.stores.originals, 'big'), Buffer.alloc(4 * 1024 * 1024, 1));
    assert.deepEqual(await cachedStoreDiskUse(t.config), first, 'within the cache time: no new walk');
    const fresh = await cachedStoreDiskUse(t.config, 0);
    assert.ok(fresh.originals! >= first.originals! + 4 * 1024 * 1024, `a new walk sees the new file (${first.originals} -> ${fresh.originals})`);
    assert.deepEqual(await storeDiskUse(t.config), fresh);
  });

  it('samples the queue depth per minute for the charts', async () => {
    await insertUrls(t.db, 'uk', 3);
    await sampleQueue(t.db);
    const samples = await t.db.selectFrom('queue_samples').select(['country', 'stage', 'due']).execute();
    assert.deepEqual(samples, [{ country: 'uk', stage: 'download', due: 3 }]);
    assert.deepEqual(
      (await queueDepth(t.db, 'uk')).map((q) => q.due),
      [3],
    );
    assert.deepEqual(await datasourceFailures(t.db, 1), []);
  });
});
