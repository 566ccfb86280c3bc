// An s3:// URL whose key has a broken %-escape cannot name any object: the URL's fault (bad_url, failed at
// once), like any URL that does not parse. It made fetchS3Original throw, which the worker recorded as
// `internal`: ours, given back uncharged for ever, and counted as a bug in the stage's error rate.
import assert from 'node:assert/strict';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { insertQueuedRow } from './helpers/imaged-in-process.ts';
import { runDownloads } from './helpers/run-downloads.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('an s3:// URL with a malformed %-escape in its key', function () {
  this.timeout(30_000);
  let t: TestDatabase | null = null;
  afterEach(async () => {
    await t?.drop();
    t = null;
  });

  it("is the URL's fault in lis_downloadd's worker: bad_url, failed at once, not internal for ever", async () => {
    // The bucket is configured; no request is ever sent to its (closed) endpoint for such a key.
    t = await createTestDatabase({
      overrides: { download: TEST_DOWNLOAD, imaged: { s3: { good: { endpoint: 'http://127.0.0.1:9', accessKeyId: 'k', secretAccessKey: 's' } } } },
    });
    const bad = 's3://good/x/%E0%A4%A.jpg';
    await insertQueuedRow(t.db, bad);
    const log = createLogger({ component: 'downloadd', log: t.config.log, screen: false });
    try {
      await runDownloads(t, log, 'test:s3-malformed');
    } finally {
      await closeLogger(log);
    }
    const row = await t.db.selectFrom('live_images').select(['state', 'attempts', 'last_error_class', 'last_error']).executeTakeFirstOrThrow();
    assert.deepEqual([row.state, row.attempts, row.last_error_class], ['failed', 1, 'bad_url']);
    assert.match(row.last_error ?? '', /^bad URL: .*%E0%A4%A\.jpg/);
  });
});
