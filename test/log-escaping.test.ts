import assert from 'node:assert/strict';
import path from 'node:path';
import { sql } from 'kysely';
import { escapeControl, formatLine } from '../src/log/line-format.ts';
import { makeTestImages, startImageServer, type ImageServer } from './helpers/image-server.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { readLog } from './helpers/log-files.ts';

describe('log lines cannot be forged', function () {
  this.timeout(40_000);

  it('escapes control characters and line separators, and keeps a stack trace indented below its line', () => {
    assert.equal(escapeControl('a\nb\rc\td\x1b[31me\x7f\u0085f\u2028g'), 'a\\nb\\rc\\td\\x1b[31me\\x7f\\x85f\\u2028g');
    assert.equal(escapeControl('plain http://a.com/b.jpg?x=1'), 'plain http://a.com/b.jpg?x=1');
    const line = formatLine({
      time: new Date(2026, 0, 2, 3, 4, 5),
      level: 'debug',
      pid: 1,
      message: 'x\nJan 02 03:04:05 ERROR Forged[1] y',
      detail: 'Error: x\nJan 02 03:04:05 ERROR Forged[1] y\n    at f (a.ts:1:1)',
    });
    const lines = line.split('\n');
    assert.equal(lines[0], 'Jan 02 03:04:05 DEBUG ImageSys[1] x\\nJan 02 03:04:05 ERROR Forged[1] y');
    assert.ok(
      lines.slice(1).every((l) => l.startsWith('    ')),
      line,
    );
  });

  describe('a URL with a newline, inserted by plain SQL', () => {
    let server: ImageServer;
    let t: TestDatabase;
    before(async () => (server = await startImageServer(await makeTestImages())));
    after(async () => server.close());
    beforeEach(async () => (t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD } })));
    afterEach(async () => t.drop());

    it('is logged on one line by lis_downloadd', async () => {
      const forged = 'Jun 19 09:11:26 ERROR Download::fetch[1]:UK forged line';
      // Plain SQL, as an ETL may write it: no check of ours sees it (enqueue refuses such lines).
      await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, ${server.url('/404')} || E'\n' || ${forged})`.execute(t.db);
      const run = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', t.writeConfig(), '--noproxy', '--verbose'], { LIS_DATABASE_URL: t.url });
      assert.equal((await run.exited).code, 0, run.output());
      const lines = readLog(path.join(t.config.log.dir, 'downloadd.uk.log')).split('\n');
      assert.ok(!lines.some((l) => l.startsWith('Jun 19 09:11:26')), `no forged line:\n${lines.join('\n')}`);
      const mentions = lines.filter((l) => l.includes('forged line'));
      assert.equal(mentions.length, 1, mentions.join('\n'));
      assert.match(mentions[0], /DEBUG Download::fetch\[\d+\]:UK http:\/\/127\.0\.0\.1:\d+\/404\\nJun 19 09:11:26 ERROR Download::fetch\[1\]:UK forged line: /);
    });
  });
});
