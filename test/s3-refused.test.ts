// An S3 bucket's endpoint and credentials are ours (imaged.s3): when S3 refuses us the bucket (a key id it does
// not know, a wrong signature, a policy that denies us, a bucket in our config that is not there), no row and
// no datasource is to blame. The rows are given back uncharged, and the s3_refused alert tells an operator.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import { findAlerts } from '../src/alerts/alert-sources.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg, s3Credentials, startS3rver } from './helpers/imaged-fixtures.ts';
import { insertQueuedRow, rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import { runDownloads } from './helpers/run-downloads.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/**
 * An S3 endpoint on 127.0.0.1 that refuses every request as S3 does, with its XML error body: the bucket
 * (the path's first segment) picks the status and code. (s3rver checks the access key id, but not a V4 signature, and has no
 * bucket policies: AccessDenied and SignatureDoesNotMatch come from here.)
 */
async function startRefusingS3(codes: Record<string, [number, string]>): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const bucket = (req.url ?? '/').split('/')[1];
    const [status, code] = codes[bucket] ?? [404, 'NoSuchBucket'];
    res.writeHead(status, { 'Content-Type': 'application/xml', 'x-amz-request-id': 'test' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>refused by the test</Message><RequestId>test</RequestId></Error>`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("S3 refusing us a bucket of imaged.s3 is our fault, not the source's", function () {
  this.timeout(60_000);
  const closers: Array<() => Promise<void> | void> = [];
  let t: TestDatabase | null = null;
  let picture: Buffer;
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await t?.drop();
    t = null;
  });

  /** s3rver with `good` (holding x/1.jpg) and `locked`, and the refusing endpoint; the buckets as imaged.s3 has them. */
  async function buckets() {
    const dir = fs.mkdtempSync('/tmp/lis-s3rver-');
    closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const s3 = await startS3rver(dir, ['good', 'locked']);
    closers.push(() => s3.close());
    const refusing = await startRefusingS3({
      denied: [403, 'AccessDenied'],
      resigned: [403, 'SignatureDoesNotMatch'],
      impatient: [400, 'RequestTimeout'],
    });
    closers.push(() => refusing.close());
    picture = await photoJpeg(300, 200);
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3Credentials() });
    await client.send(new PutObjectCommand({ Bucket: 'good', Key: 'x/1.jpg', Body: picture }));
    await client.send(new PutObjectCommand({ Bucket: 'locked', Key: 'x/1.jpg', Body: picture }));
    client.destroy();
    return {
      good: { endpoint: s3.endpoint, ...s3Credentials() },
      // A key id s3rver does not know: InvalidAccessKeyId (403).
      locked: { endpoint: s3.endpoint, accessKeyId: 'NOT-OURS', secretAccessKey: 'wrong' },
      // In our config, not on the server: NoSuchBucket (404, but not a missing key).
      gone: { endpoint: s3.endpoint, ...s3Credentials() },
      denied: { endpoint: refusing.endpoint, ...s3Credentials() },
      resigned: { endpoint: refusing.endpoint, ...s3Credentials() },
      // S3 gave up waiting for our request: a passing fault, retried like a timeout (as HTTP's 408). A feed's own
      // bucket, so that it is charged as such (of an endpoint we operate it is our outage: s3-unavailable.test.ts).
      impatient: { endpoint: refusing.endpoint, ...s3Credentials(), operatedBy: 'source' as const },
    };
  }

  const rowsByUrl = async (db: TestDatabase['db']) =>
    Object.fromEntries(
      (
        await db.selectFrom('live_images').select(['image_url', 'stage', 'state', 'attempts', 'last_error_class', 'last_error', 'next_attempt_at']).execute()
      ).map((r) => [r.image_url, r]),
    );

  it("lis_downloadd's worker gives such rows back uncharged (s3_refused, told by its own alert), and still charges a missing key (NoSuchKey)", async () => {
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD, imaged: { s3: await buckets() } } });
    const db = t.db;
    const refused = ['locked', 'gone', 'denied', 'resigned'].map((b) => `s3://${b}/x/1.jpg`);
    // S3:// too: schemes are case-insensitive, and enqueue takes it (as it takes HTTP://).
    for (const url of ['s3://good/x/1.jpg', 'S3://good/x/1.jpg', 's3://good/x/missing.jpg', 's3://impatient/x/1.jpg', ...refused])
      await insertQueuedRow(db, url);
    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false });
    closers.push(() => closeLogger(log));
    const started = new Date();
    await runDownloads(t, log, 'test:s3-refused');

    const rows = await rowsByUrl(db);
    for (const url of ['s3://good/x/1.jpg', 'S3://good/x/1.jpg']) assert.deepEqual([rows[url].stage, rows[url].last_error_class], ['thumbnail', null], url);
    const missing = rows['s3://good/x/missing.jpg'];
    assert.deepEqual([missing.state, missing.last_error_class, missing.attempts], ['failed', 'http_404', 1], 'a missing key stays the source fault it is');
    const impatient = rows['s3://impatient/x/1.jpg'];
    assert.deepEqual(
      [impatient.state, impatient.last_error_class, impatient.attempts],
      ['waiting', 'timeout', 1],
      'RequestTimeout: retried, not failed for good',
    );
    const expected: Record<string, RegExp> = {
      locked: /^S3 InvalidAccessKeyId: .*\(bucket locked: check its imaged\.s3 entry/,
      gone: /^S3 NoSuchBucket: .*\(bucket gone: /,
      denied: /^S3 AccessDenied: .*\(bucket denied: /,
      resigned: /^S3 SignatureDoesNotMatch: .*\(bucket resigned: /,
    };
    for (const url of refused) {
      const row = rows[url];
      assert.deepEqual([row.stage, row.state, row.attempts, row.last_error_class], ['download', 'waiting', 0, 's3_refused'], url);
      assert.match(row.last_error ?? '', expected[url.split('/')[2]], url);
      assert.ok(row.next_attempt_at > started, `${url}: given back to wait (queue.oursRetrySeconds), not retried at once`);
    }
    // The operator's part: the s3_refused alert names the datasource at once (the stage's error rate, which needs a
    // hundred rows and a fifth of them, does not count them twice).
    const { rows: minutes } = await sql<{ ours: number; failed: number }>`
      SELECT sum(ours)::int AS ours, sum(failed)::int AS failed FROM worker_minutes WHERE worker_id = 'test:s3-refused'`.execute(db);
    assert.deepEqual(minutes[0], { ours: 0, failed: 2 });
    const alerts = await findAlerts(db, t.config.alerts, ['s3_refused']);
    assert.deepEqual(
      alerts.map((a) => [a.key, a.subject]),
      [['s3_refused:uk:1', 'S3 refuses us the originals of UK datasource 1']],
    );
    assert.match(alerts[0].detail, new RegExp(`^${refused.length} rows refused in the last 15 min`));
  });

  it('lis_imaged answers 503 (our fault) for a key of a bucket S3 refuses us, and keeps the row uncharged; a missing key of a good bucket is still 404', async () => {
    t = await createTestDatabase({
      overrides: {
        download: TEST_DOWNLOAD,
        thumbnail: { presets: { small: { width: 120, height: 90, mode: 'crop' } } },
        imaged: {
          s3: await buckets(),
          origins: {
            photos: { country: 'uk', datasourceId: 7, sources: [{ type: 's3', bucket: 'good' }] },
            locked: { country: 'uk', datasourceId: 8, sources: [{ type: 's3', bucket: 'locked' }] },
            denied: { country: 'uk', datasourceId: 9, sources: [{ type: 's3', bucket: 'denied' }] },
          },
        },
      },
    });
    const db = t.db;
    const server = await startImagedInProcess(t.config, db, t.url);
    closers.push(server.close);

    assert.equal((await rawGet(server.url, '/photos/small/x/1.jpg')).status, 200);
    assert.equal((await rawGet(server.url, '/photos/small/x/missing.jpg')).status, 404);
    for (const bucket of ['locked', 'denied']) {
      const answer = await rawGet(server.url, `/${bucket}/small/x/1.jpg`);
      assert.equal(answer.status, 503, `${bucket}: ${answer.body.toString()}`);
      assert.match(answer.body.toString(), /s3_refused/);
      const row = (await rowsByUrl(db))[`s3://${bucket}/x/1.jpg`];
      assert.ok(row, `${bucket}: the row is kept (a key we could not look for is not a missing key)`);
      assert.deepEqual([row.stage, row.state, row.attempts, row.last_error_class], ['download', 'waiting', 0, 's3_refused'], bucket);
    }
  });

  it("lis_imaged: a fallback bucket S3 refuses us keeps the first source's (HTTP) 404 from failing (and deleting) the row: 503, kept uncharged", async () => {
    // The first source: an HTTP origin that has no key at all.
    const origin = await OriginServer.start(new Map());
    closers.push(() => origin.close());
    t = await createTestDatabase({
      overrides: {
        download: TEST_DOWNLOAD,
        thumbnail: { presets: { small: { width: 120, height: 90, mode: 'crop' } } },
        imaged: {
          s3: await buckets(),
          origins: {
            // The HTTP origin first (it has not got the key), the bucket we may not read as its fallback.
            photos: {
              country: 'uk',
              datasourceId: 7,
              sources: [
                { type: 'http', baseUrl: origin.url('/photos/') },
                { type: 's3', bucket: 'locked' },
              ],
            },
            both: {
              country: 'uk',
              datasourceId: 8,
              sources: [
                { type: 'http', baseUrl: origin.url('/both/') },
                { type: 's3', bucket: 'good' },
              ],
            },
          },
        },
      },
    });
    const server = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(server.close);

    const answer = await rawGet(server.url, '/photos/small/x/1.jpg');
    assert.equal(answer.status, 503, answer.body.toString());
    assert.match(answer.body.toString(), /s3_refused/);
    const rows = Object.values(await rowsByUrl(t.db));
    assert.equal(rows.length, 1, 'the row is kept: the key may well be in the bucket');
    assert.deepEqual([rows[0].stage, rows[0].state, rows[0].attempts, rows[0].last_error_class], ['download', 'waiting', 0, 's3_refused']);
    // Both sources answering that they lack the key is still a 404, and leaves nothing behind.
    assert.equal((await rawGet(server.url, '/both/small/x/nowhere.jpg')).status, 404);
    assert.equal((await rowsByUrl(t.db))[origin.url('/both/x/nowhere.jpg')], undefined);
  });
});
