import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { lookupImage } from '../src/web/lookup-image.ts';
import { withSecretsHidden } from '../src/cli/config-command.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { maskUrlPasswords } from '../src/util/mask-url-password.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { makeTestImages, startImageServer, type ImageServer } from './helpers/image-server.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/**
 * A feed URL may carry a source's basic-auth password (`http://user:secret@host/x.jpg`). The URL stays the row's
 * identity, but its password reaches no log line and no recorded reason (lis, the status page and alerts show those).
 */
describe('URL passwords are not shown to operators', function () {
  this.timeout(30_000);

  it('maskUrlPasswords masks the password of every URL in a text, and nothing else', () => {
    assert.equal(maskUrlPasswords('http://user:pass@host/x.jpg'), 'http://user:***@host/x.jpg');
    assert.equal(maskUrlPasswords('from https://u:p%40w@h:8080/a to HTTP://a:b@c/d'), 'from https://u:***@h:8080/a to HTTP://a:***@c/d');
    assert.equal(maskUrlPasswords('"http://:pw@h/"'), '"http://:***@h/"');
    for (const kept of ['http://user@host/x.jpg', 'http://host:8080/a@2x.jpg', 'http://host/a:b@c.jpg', 'no URL: a:b@c'])
      assert.equal(maskUrlPasswords(kept), kept);
  });

  it("masks a password after a user name with an '@' (a mail address, Azure's user@server), one with an '@' unencoded, or given as a query parameter", () => {
    // Each as pg and got read it: the userinfo ends at the last `@`; pg takes `?password=` as the password.
    assert.equal(new URL('postgres://me@srv:s3cret@db.example/x').password, 's3cret');
    assert.equal(maskUrlPasswords('GET http://me@corp.com:s3cret@host/x.jpg'), 'GET http://me@corp.com:***@host/x.jpg');
    assert.equal(maskUrlPasswords('postgres://me@srv:s3cret@db.example:5432/imagesys'), 'postgres://me@srv:***@db.example:5432/imagesys');
    assert.equal(maskUrlPasswords('http://u:p@ss@host/x.jpg at 1:2@3'), 'http://u:***@host/x.jpg at 1:2@3');
    assert.equal(
      maskUrlPasswords('postgres://imagesys@db/imagesys?sslmode=require&password=s3cret'),
      'postgres://imagesys@db/imagesys?sslmode=require&password=***',
    );
    assert.equal(maskUrlPasswords('postgres://db/x?sslpassword=s3cret#y'), 'postgres://db/x?sslpassword=***#y');
    const shown = withSecretsHidden(parseConfig({ database: { url: 'postgres://admin@srv:db-s3cret@srv.example/imagesys' } }, {}));
    assert.equal(shown.database.url, 'postgres://admin@srv:***@srv.example/imagesys', '`lis config`');
    for (const kept of ['http://me@corp.com@host:8080/x.jpg', 'http://host:8080/a@b?user=me']) assert.equal(maskUrlPasswords(kept), kept);
  });

  describe('lis_downloadd --verbose', () => {
    let server: ImageServer;
    let t: TestDatabase;
    before(async () => (server = await startImageServer(await makeTestImages())));
    after(async () => server.close());
    beforeEach(async () => (t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } })));
    afterEach(async () => t.drop());

    it('logs and records no password of a URL with userinfo; the URL itself is kept', async () => {
      const secret = 's3cret-Pw9';
      const withUser = (p: string) => server.url(p).replace('http://', `http://feeduser:${secret}@`);
      // A download, a failure, and a URL that does not parse (its reason quotes it), as an ETL may write them.
      const urls = [withUser('/good.jpg'), withUser('/404'), `http://feeduser:${secret}@bad host/x.jpg`];
      for (const url of urls) await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, ${url})`.execute(t.db);
      const run = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig(), '--noproxy', '--verbose'], { LIS_DATABASE_URL: t.url });
      assert.equal((await run.exited).code, 0, run.output());

      const logDir = t.config.log.dir;
      const logs = fs.readdirSync(logDir).map((f) => fs.readFileSync(path.join(logDir, f), 'utf8'));
      const all = logs.join('\n');
      assert.match(all, /DEBUG Download::fetch\[\d+\]:UK http:\/\/feeduser:\*\*\*@127\.0\.0\.1:\d+\/404: http_404/, all);
      assert.ok(!all.includes(secret), `no password in the log:\n${all}`);
      assert.ok(!run.output().includes(secret), `no password in the output:\n${run.output()}`);

      const rows = await t.db.selectFrom('live_images').select(['image_url', 'stage', 'last_error_class', 'last_error']).orderBy('id').execute();
      assert.deepEqual(
        rows.map((r) => r.image_url),
        urls,
        'the row keeps its URL',
      );
      assert.deepEqual(
        rows.map((r) => [r.stage, r.last_error_class]),
        [
          ['thumbnail', null],
          ['download', 'http_404'],
          ['download', 'bad_url'],
        ],
      );
      assert.equal(rows[2].last_error, 'bad URL: "http://feeduser:***@bad host/x.jpg" does not parse');
      const page = JSON.stringify(await lookupImage(t.db, urls[1]));
      assert.ok(page.includes('feeduser:***@127.0.0.1') && !page.includes(secret), page);
    });

    it('lis enqueue names a bad line without its password', async () => {
      const secret = 's3cret-Pw9';
      const run = spawnTs(
        'bin/lis',
        ['--config', t.writeConfig(), 'enqueue', '--country', 'uk', '--datasource', '16', '-'],
        {},
        `http://feeduser:${secret}@[bad/x.jpg\n`,
      );
      await run.exited;
      assert.match(run.output(), /line 1: not a valid URL: "http:\/\/feeduser:\*\*\*@\[bad\/x\.jpg"/, run.output());
      assert.ok(!run.output().includes(secret), run.output());
    });
  });
});
