// An S3 endpoint that is down is blamed on whoever runs it (imaged.s3 `operatedBy`). Our own (a MinIO next to us,
// `us`, the default): our outage, `s3_unavailable`, rows given back uncharged, no datasource disabled, one alert
// naming the bucket and the cause, lis_imaged 503 with Retry-After; once it is back the rows go live. A feed's
// own bucket (`source`): charged as an HTTP server's, failed for good after queue.maxAttempts, its datasource
// disabled by bad_datasources. A real s3rver on loopback, stopped and started again on the same port.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import { findAlerts } from '../src/alerts/alert-sources.ts';
import type { LisConfig, LisConfigInput } from '../src/config/config-schema.ts';
import type { DownloadFailure } from '../src/download/classify-download-error.ts';
import { blameEndpoint, classifyS3Error } from '../src/download/fetch-s3-original.ts';
import { closeLogger, createLogger, type Logger } from '../src/log/create-logger.ts';
import { runCheck } from '../src/manager/run-check.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { enqueueRows } from '../src/queue/enqueue-rows.ts';
import { createThumbnailWorker } from '../src/thumbnail/thumbnail-worker.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { photoJpeg, s3Credentials, startImaged, startS3rver } from './helpers/imaged-fixtures.ts';
import { rawGet, startImagedInProcess } from './helpers/imaged-in-process.ts';
import { runDownloads } from './helpers/run-downloads.ts';
import { waitFor } from './helpers/processes.ts';
import { runPusherOnce } from './helpers/run-pusher.ts';
import { startSmtpSink } from './helpers/smtp-sink.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { runByHand } from './helpers/run-by-hand.ts';

const KEYS = ['x/1.jpg', 'x/2.jpg', 'x/3.jpg'];
/** The origin on our own bucket, read by datasource 1. */
const ORIGIN_OURS = { country: 'uk', datasourceId: 1, sources: [{ type: 's3' as const, bucket: 'ours' }] };

describe('an S3 endpoint that is down: ours (operatedBy "us") waits uncharged and alerted, a feed\'s ("source") is charged', function () {
  this.timeout(120_000);
  const closers: Array<() => Promise<void> | void> = [];
  let t: TestDatabase | null = null;
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await Promise.resolve(close()).catch(() => {});
    await t?.drop();
    t = null;
  });

  /** A test database for lis_imaged: one small preset, the endpoint's buckets and these origins. */
  const imagedDatabase = (buckets: NonNullable<LisConfigInput['imaged']>['s3'], origins: NonNullable<LisConfigInput['imaged']>['origins']) =>
    createTestDatabase({
      overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: { small: { width: 120, height: 90, mode: 'crop' } } }, imaged: { s3: buckets, origins } },
    });

  /**
   * s3rver holding KEYS in `ours` and `theirs`, then stopped: the buckets as imaged.s3 has them (`ours` left to
   * the default), and `restart`, which brings the same endpoint back with the same objects.
   */
  async function downEndpoint() {
    const dir = fs.mkdtempSync('/tmp/lis-s3rver-');
    closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const first = await startS3rver(dir, ['ours', 'theirs']);
    const client = new S3Client({ endpoint: first.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3Credentials() });
    const picture = await photoJpeg(300, 200);
    for (const bucket of ['ours', 'theirs']) for (const key of KEYS) await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: picture }));
    client.destroy();
    await first.close();
    return {
      buckets: {
        ours: { endpoint: first.endpoint, ...s3Credentials() },
        theirs: { endpoint: first.endpoint, ...s3Credentials(), operatedBy: 'source' as const },
      },
      restart: async () => {
        const again = await startS3rver(dir, ['ours', 'theirs'], first.port);
        closers.push(() => again.close());
      },
    };
  }

  /** Every row's retry time has come (a claim looks at claimable_rows' copy of it): hours of retries in a moment. */
  const comeDue = async (db: TestDatabase['db']) => {
    await sql`UPDATE live_images SET next_attempt_at = now()`.execute(db);
    await sql`UPDATE claimable_rows SET next_attempt_at = now()`.execute(db);
  };

  const rowsByUrl = async (db: TestDatabase['db']) =>
    Object.fromEntries(
      (await db.selectFrom('live_images').select(['image_url', 'stage', 'state', 'attempts', 'last_error_class', 'last_error']).execute()).map((r) => [
        r.image_url,
        r,
      ]),
    );

  const enabled = async (db: TestDatabase['db']) =>
    Object.fromEntries(
      (await db.selectFrom('datasources').select(['datasource_id', 'enabled']).orderBy('datasource_id').execute()).map((r) => [r.datasource_id, r.enabled]),
    );

  /** lis_thumbnaild's worker run by hand on uk until no rows are gained. */
  async function runThumbnails(config: LisConfig, db: TestDatabase['db'], url: string, log: Logger): Promise<void> {
    const worker = createThumbnailWorker({ config, db });
    await runByHand(worker, { config, db, url }, log, { chunkSize: 10 });
  }

  it("lis_downloadd over many retry rounds: our bucket's rows wait uncharged (datasource enabled, one alert naming the bucket and cause), the feed's fail for good (datasource disabled); back up, ours go live and the alert recovers", async () => {
    const endpoint = await downEndpoint();
    const smtp = await startSmtpSink({ user: 'ops', password: 'pw' });
    closers.push(() => smtp.close());
    t = await createTestDatabase({
      overrides: {
        download: TEST_DOWNLOAD,
        imaged: { s3: endpoint.buckets },
        queue: { maxAttempts: 3 },
        manager: { badDatasource: { windowHours: 1, minAttempts: 3, failureRate: 0.5 } },
        alerts: {
          smtp: {
            host: '127.0.0.1',
            port: smtp.port,
            secure: false,
            user: 'ops',
            password: 'pw',
            from: 'imagesys@example.invalid',
            to: ['ops@example.invalid'],
          },
        },
      },
    });
    const { db, config } = t;
    // Both datasources known for an hour: bad_datasources judges what happened since they were last changed.
    await sql`INSERT INTO datasources (country, datasource_id, updated_at) VALUES ('uk', 1, now() - interval '1 hour'), ('uk', 2, now() - interval '1 hour')`.execute(
      db,
    );
    const ours = KEYS.map((k) => `s3://ours/${k}`);
    const theirs = KEYS.map((k) => `s3://theirs/${k}`);
    const missing = 's3://ours/x/missing.jpg';
    // Two datasources read our bucket: one trouble, one alert naming both.
    await enqueueRows(
      db,
      'uk',
      [ours[0], ours[1], missing].map((url) => ({ datasourceId: 1, url })),
    );
    await enqueueRows(db, 'uk', [{ datasourceId: 3, url: ours[2] }]);
    await enqueueRows(
      db,
      'uk',
      theirs.map((url) => ({ datasourceId: 2, url })),
    );
    const log = createLogger({ component: 'downloadd', log: config.log, screen: false });
    closers.push(() => closeLogger(log));
    const manager = createLogger({ component: 'managerd', log: config.log, screen: false });
    closers.push(() => closeLogger(manager));

    // The endpoint stays down for more rounds than queue.maxAttempts.
    for (let round = 0; round < 4; round++) {
      await comeDue(db);
      await runDownloads(t, log, `test:s3-down-${round}`);
    }
    let rows = await rowsByUrl(db);
    for (const url of [...ours, missing]) {
      const row = rows[url];
      assert.deepEqual([row.stage, row.state, row.attempts, row.last_error_class], ['download', 'waiting', 0, 's3_unavailable'], url);
      assert.match(row.last_error ?? '', /^S3 bucket ours unavailable at http:\/\/127\.0\.0\.1:\d+ \(imaged\.s3 operatedBy "us".*ECONNREFUSED/, url);
    }
    for (const url of theirs) {
      const row = rows[url];
      assert.deepEqual([row.stage, row.state, row.attempts, row.last_error_class], ['download', 'failed', 3, 'connection'], url);
    }
    assert.equal(await runCheck('bad_datasources', { config, db, log: manager, country: 'uk' }).then((s) => /1 disabled \(uk 2:/.test(s)), true);
    assert.deepEqual(await enabled(db), { 1: true, 2: false, 3: true }, 'only the feed whose own endpoint is down is disabled');

    // An outage of a minute or two (a MinIO restart) pages nobody: alerts.s3DownMinutes (5) has not passed.
    assert.deepEqual(await findAlerts(db, config.alerts, ['s3_unavailable']), [], 'not yet');
    // Its first failures six minutes before its last (as rows tried again every queue.oursRetrySeconds give).
    await sql`INSERT INTO datasource_minutes (country, datasource_id, minute, stage, error_class, n)
              SELECT country, datasource_id, min(minute) - interval '6 minutes', stage, error_class, 1 FROM datasource_minutes
               WHERE error_class = 's3_unavailable' GROUP BY country, datasource_id, stage, error_class`.execute(db);
    // The operator is told once, of the bucket (not of each datasource reading it), with the cause.
    const alerts = await findAlerts(db, config.alerts, ['s3_unavailable']);
    assert.deepEqual(
      alerts.map((a) => [a.key, a.subject]),
      [['s3_unavailable:ours', 'S3 bucket ours unavailable (operated by us): rows wait']],
    );
    assert.match(alerts[0].detail, /ECONNREFUSED.*Rows of UK datasource 1, UK datasource 3 read it \(18 given back in the last 15 min\)/);
    assert.match(alerts[0].action, /"operatedBy": "source"/);
    // (bad_datasources told of the feed it disabled itself, when it did.)
    assert.match(await runCheck('alerts', { config, db, log: manager }), /^alerts: 1 sent, 1 already sent/);
    assert.deepEqual(smtp.mails.map((m) => m.subject).sort(), [
      '[ImageSys] S3 bucket ours unavailable (operated by us): rows wait',
      '[ImageSys] datasource 2 of UK disabled',
    ]);

    // Back up: our rows are read, thumbnailed and pushed; the missing key is the key's fault, as ever.
    await endpoint.restart();
    await comeDue(db);
    await runDownloads(t, log, 'test:s3-back');
    rows = await rowsByUrl(db);
    assert.deepEqual([rows[missing].state, rows[missing].attempts, rows[missing].last_error_class], ['failed', 1, 'http_404']);
    await runThumbnails(config, db, t.url, log);
    await addFrontend(db, 'fe1', path.join(t.dir, 'fe1'));
    await runPusherOnce(t);
    rows = await rowsByUrl(db);
    for (const url of ours)
      assert.deepEqual([rows[url].stage, rows[url].state, rows[url].attempts, rows[url].last_error_class], ['live', 'done', 0, null], url);
    assert.match(await runCheck('alerts', { config, db, log: manager }), /^alerts: 1 sent/);
    assert.equal(smtp.mails.at(-1)!.subject, '[ImageSys] recovered: S3 bucket ours unavailable (operated by us): rows wait');
    assert.deepEqual(await enabled(db), { 1: true, 2: false, 3: true });
  });

  it("an outage only lis_imaged has met is told all the same: its heartbeat adds its stages' outcomes to the per-minute figures the alert reads", async () => {
    const endpoint = await downEndpoint();
    t = await imagedDatabase(endpoint.buckets, { ours: ORIGIN_OURS });
    const imaged = await startImaged(t.writeConfig({ queue: { ...t.config.queue, heartbeatSeconds: 1 } }), { LIS_DATABASE_URL: t.url });
    closers.push(imaged.stop);
    const down = await rawGet(imaged.url, '/ours/small/x/1.jpg');
    assert.equal(down.status, 503, down.body.toString());
    // No lis_downloadd runs: what the alert reads comes from lis_imaged's own beat.
    const counted = async () =>
      (
        await sql<{ n: number }>`SELECT coalesce(sum(n), 0)::int AS n FROM datasource_minutes
                                  WHERE country = 'uk' AND datasource_id = 1 AND stage = 'download' AND error_class = 's3_unavailable'`.execute(t!.db)
      ).rows[0].n;
    await waitFor(async () => (await counted()) === 1, 20_000, "lis_imaged's outcome in datasource_minutes").catch((error: Error) => {
      throw new Error(`${error.message}; lis_imaged:\n${imaged.run.output()}`, { cause: error });
    });
    const alerts = await findAlerts(t.db, { ...t.config.alerts, s3DownMinutes: 0 }, ['s3_unavailable']);
    assert.deepEqual(
      alerts.map((a) => a.key),
      ['s3_unavailable:ours'],
    );
    assert.match(alerts[0].detail, /ECONNREFUSED.*Rows of UK datasource 1 read it \(1 given back in the last 15 min\)/);
  });

  it("lis_imaged: a key of our bucket is 503 with Retry-After and its row kept uncharged; the feed's bucket is the source's 502, charged; back up, 200", async () => {
    const endpoint = await downEndpoint();
    t = await imagedDatabase(endpoint.buckets, {
      ours: ORIGIN_OURS,
      theirs: { country: 'uk', datasourceId: 2, sources: [{ type: 's3' as const, bucket: 'theirs' }] },
    });
    const server = await startImagedInProcess(t.config, t.db, t.url);
    closers.push(server.close);

    const down = await rawGet(server.url, '/ours/small/x/1.jpg');
    assert.equal(down.status, 503, down.body.toString());
    assert.equal(down.headers['retry-after'], String(t.config.imaged.retryAfterSeconds));
    assert.match(down.body.toString(), /s3_unavailable: S3 bucket ours unavailable at .*ECONNREFUSED.*our fault, not the image's/);
    const feed = await rawGet(server.url, '/theirs/small/x/1.jpg');
    assert.equal(feed.status, 502, feed.body.toString());
    assert.match(feed.body.toString(), /connection: .*ECONNREFUSED.*to be retried/);
    let rows = await rowsByUrl(t.db);
    const ours = rows['s3://ours/x/1.jpg'];
    assert.deepEqual([ours.stage, ours.state, ours.attempts, ours.last_error_class], ['download', 'waiting', 0, 's3_unavailable']);
    const theirs = rows['s3://theirs/x/1.jpg'];
    assert.deepEqual([theirs.stage, theirs.state, theirs.attempts, theirs.last_error_class], ['download', 'waiting', 1, 'connection']);

    await endpoint.restart();
    await comeDue(t.db);
    const up = await rawGet(server.url, '/ours/small/x/1.jpg');
    assert.equal(up.status, 200, up.body.toString());
    assert.equal(up.headers['content-type'], 'image/jpeg');
    rows = await rowsByUrl(t.db);
    assert.deepEqual([rows['s3://ours/x/1.jpg'].stage, rows['s3://ours/x/1.jpg'].attempts, rows['s3://ours/x/1.jpg'].last_error_class], ['push', 0, null]);
  });
});

describe('blameEndpoint: what of an S3 failure is the endpoint not serving us, by whose endpoint it is', () => {
  const settings = (operatedBy: 'us' | 'source') => ({
    endpoint: null,
    region: 'eu-west-1',
    accessKeyId: 'k',
    secretAccessKey: 's',
    forcePathStyle: true,
    operatedBy,
  });
  /** An error as the SDK throws it for an S3 error answer: its code as the name, the status in $metadata. */
  const answered = (name: string, status: number) => Object.assign(new Error(`${name} from the test`), { name, $metadata: { httpStatusCode: status } });
  const failures: Record<string, DownloadFailure> = {
    refused: classifyS3Error(Object.assign(new Error('connect ECONNREFUSED 10.0.0.9:9000'), { code: 'ECONNREFUSED' }), 'b'),
    internal: classifyS3Error(answered('InternalError', 500), 'b'),
    slowDown: classifyS3Error(answered('SlowDown', 503), 'b'),
    silent: { reason: 'timeout: waiting for the first byte took too long (download.timeouts.firstByteSeconds)', errorClass: 'timeout', retryable: true },
    cut: { reason: 'truncated: the body ended early', errorClass: 'truncated', retryable: true },
    noSuchKey: classifyS3Error(answered('NoSuchKey', 404), 'b'),
    badRequest: classifyS3Error(answered('InvalidArgument', 400), 'b'),
    denied: classifyS3Error(answered('AccessDenied', 403), 'b'),
    notImage: { reason: 'not an image (HTML)', errorClass: 'not_image', retryable: false },
    diskFull: { reason: 'cannot write the original: ENOSPC', errorClass: 'store_write_failed', retryable: true },
  };

  it('of a bucket we operate: refused, 5xx, silent or cut is s3_unavailable (naming the bucket, where, and what it said); the rest is unchanged', () => {
    const blamed = Object.fromEntries(Object.entries(failures).map(([k, f]) => [k, blameEndpoint(f, 'photos', settings('us')).errorClass]));
    assert.deepEqual(blamed, {
      refused: 's3_unavailable',
      internal: 's3_unavailable',
      slowDown: 's3_unavailable',
      silent: 's3_unavailable',
      cut: 's3_unavailable',
      noSuchKey: 'http_404',
      badRequest: 'http_4xx',
      denied: 's3_refused',
      notImage: 'not_image',
      diskFull: 'store_write_failed',
    });
    assert.deepEqual(blameEndpoint(failures.internal, 'photos', settings('us')), {
      reason:
        'S3 bucket photos unavailable at AWS\'s endpoint for eu-west-1 (imaged.s3 operatedBy "us": our outage, not the image\'s): S3 InternalError: InternalError from the test',
      errorClass: 's3_unavailable',
      retryable: true,
    });
  });

  it("of a feed's own bucket: every failure stays as S3 said it (the source's connection, http_5xx, timeout)", () => {
    for (const f of Object.values(failures)) assert.deepEqual(blameEndpoint(f, 'photos', settings('source')), f);
    assert.deepEqual([failures.refused.errorClass, failures.internal.errorClass, failures.slowDown.errorClass], ['connection', 'http_5xx', 'http_5xx']);
  });
});
