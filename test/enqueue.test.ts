import assert from 'node:assert/strict';
import path from 'node:path';
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import type { Db } from '../src/db/connect.ts';
import { EnqueueIncompleteError, enqueueUrlStream, type EnqueueOptions, type EnqueueStats } from '../src/intake/enqueue-urls.ts';
import { parseUrlLine } from '../src/intake/parse-url-line.ts';
import { lineRanges, storeBatch } from '../src/intake/store-batch.ts';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** A trigger that raises for any statement carrying a /poison/ URL: that batch fails as a whole, every time. */
async function poisonBatches(db: Db): Promise<void> {
  await sql`
    CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM new_rows WHERE image_url LIKE '%/poison/%') THEN RAISE EXCEPTION 'poisoned batch'; END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_poison AFTER INSERT ON live_images REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION test_poison();`.execute(db);
}

/**
 * The intake over `input` as `lis enqueue --country uk --datasource 16` reads it (batches of 100 unless
 * `options` say otherwise), with each bad line as `N: reason`.
 */
async function enqueueInput(db: Db, input: string | Buffer, options: Partial<EnqueueOptions> = {}): Promise<{ stats: EnqueueStats; bad: string[] }> {
  const bad: string[] = [];
  const stats = await enqueueUrlStream(db, Readable.from([input]), {
    country: 'uk',
    datasourceId: 16,
    maxUrlLength: 2048,
    batchSize: 100,
    onBadLine: (n, reason) => bad.push(`${n}: ${reason}`),
    ...options,
  });
  return { stats, bad };
}

describe('ETL intake', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('parses plain and DATASOURCE<TAB>URL lines, and says what is wrong with bad ones', () => {
    assert.deepEqual(parseUrlLine('http://a.com/b.jpg', 16, 2048), { kind: 'url', datasourceId: 16, url: 'http://a.com/b.jpg' });
    assert.deepEqual(parseUrlLine('7\thttps://a.com/b.jpg\r', 16, 2048), { kind: 'url', datasourceId: 7, url: 'https://a.com/b.jpg' });
    assert.deepEqual(parseUrlLine('   ', 16, 2048), { kind: 'skip' });
    assert.deepEqual(parseUrlLine('# comment', 16, 2048), { kind: 'skip' });
    // A comment is a line whose first non-blank character is # (before: an indented one was a bad line, "white space").
    assert.deepEqual(parseUrlLine('   # indented comment', 16, 2048), { kind: 'skip' });
    assert.deepEqual(parseUrlLine(' \t # after blanks and a tab\r', 16, 2048), { kind: 'skip' });
    const bad = (line: string, ds: number | null = 16) => {
      const r = parseUrlLine(line, ds ?? undefined, 40);
      assert.equal(r.kind, 'bad', line);
      return (r as { reason: string }).reason;
    };
    assert.match(bad('ftp://a.com/b.jpg'), /not an http or https URL/);
    assert.match(bad('file:///etc/passwd'), /not an http or https URL/);
    assert.match(bad('http://a.com/b\u0007.jpg'), /control characters/);
    assert.match(bad('http://a.com/b c.jpg'), /white space/);
    assert.match(bad(`http://a.com/${'x'.repeat(40)}`), /longer than 40 characters \(53\)/);
    // Characters are code points: a URL of emoji (two UTF-16 code units each) is as long as it looks, not twice.
    const emoji = `http://a.com/${'\u{1F600}'.repeat(27)}`; // 40 characters, 67 code units
    assert.deepEqual(parseUrlLine(emoji, 16, 40), { kind: 'url', datasourceId: 16, url: emoji });
    assert.match(bad(`${emoji}\u{1F600}`), /longer than 40 characters \(41\)/);
    assert.match(bad('x1\thttp://a.com/b.jpg'), /datasource "x1" is not a whole number/);
    // A tab inside a URL is white space in it, not a DATASOURCE<TAB>URL line whose datasource is a URL.
    assert.equal(bad('http://a.com/b\tc.jpg'), 'URL contains white space (a tab)');
    assert.match(bad('http://a.com/b.jpg', null), /no datasource/);
    assert.match(bad('http://[bad/b.jpg'), /not a valid URL/);
    // Parsed, `http:///b.jpg` is http://b.jpg/: another URL than the one given.
    assert.match(bad('http:///b.jpg'), /no host/);
    // An s3 URL is judged as the downloader judges it: one it could never ask S3 for is refused here, not failed later.
    for (const url of ['s3://bucket', 's3://bucket/', 's3://Bucket/k.jpg', 's3://b_b/k.jpg', 's3://good/x/%E0%A4%A.jpg'])
      assert.match(bad(url), /^not s3:\/\/bucket\/key: /, url);
    for (const url of ['s3://bucket/k.jpg', 'S3://bucket/a%20b.jpg']) assert.deepEqual(parseUrlLine(url, 16, 2048), { kind: 'url', datasourceId: 16, url });
  });

  it('queues good lines, skips bad ones with their line numbers, and only refreshes known URLs', async () => {
    const first = await enqueueInput(t.db, 'http://a.com/1.jpg\nnot a url\nhttp://a.com/2.jpg\n3\thttp://a.com/3.jpg\nhttp://a.com/1.jpg\n', { batchSize: 2 });
    assert.deepEqual(first.stats, { lines: 5, inserted: 3, refreshed: 1, bad: 1, noDatasource: 0 });
    assert.deepEqual(first.bad, ['2: URL contains white space']);
    await sql`UPDATE live_images SET last_seen = now() - interval '3 days'`.execute(t.db);
    const second = await enqueueInput(t.db, 'http://a.com/1.jpg\nhttp://a.com/4.jpg\n');
    assert.deepEqual(second.stats, { lines: 2, inserted: 1, refreshed: 1, bad: 0, noDatasource: 0 });
    const rows = await t.db
      .selectFrom('live_images')
      .select(['image_url', 'datasource_id', sql<boolean>`last_seen > now() - interval '1 minute'`.as('fresh')])
      .orderBy('image_url')
      .execute();
    assert.deepEqual(rows, [
      { image_url: 'http://a.com/1.jpg', datasource_id: 16, fresh: true },
      { image_url: 'http://a.com/2.jpg', datasource_id: 16, fresh: false },
      { image_url: 'http://a.com/3.jpg', datasource_id: 3, fresh: false },
      { image_url: 'http://a.com/4.jpg', datasource_id: 16, fresh: true },
    ]);
    const datasources = await t.db.selectFrom('datasources').select(['country', 'datasource_id']).orderBy('datasource_id').execute();
    assert.deepEqual(datasources, [
      { country: 'uk', datasource_id: 3 },
      { country: 'uk', datasource_id: 16 },
    ]);
  });

  it('takes a file with a byte order mark and CRLF line endings: line 1 is not lost', async () => {
    const file = Buffer.from('\uFEFF7\thttp://bom.example.com/1.jpg\r\n\r\n# comment\r\nhttp://bom.example.com/2.jpg\r\n', 'utf8');
    assert.equal(file[0], 0xef);
    const { stats, bad } = await enqueueInput(t.db, file);
    assert.deepEqual(bad, []);
    assert.deepEqual(stats, { lines: 4, inserted: 2, refreshed: 0, bad: 0, noDatasource: 0 });
    const rows = await t.db.selectFrom('live_images').select(['datasource_id', 'image_url']).orderBy('image_url').execute();
    assert.deepEqual(rows, [
      { datasource_id: 7, image_url: 'http://bom.example.com/1.jpg' },
      { datasource_id: 16, image_url: 'http://bom.example.com/2.jpg' },
    ]);
  });

  it('a line that is not UTF-8 (a Latin-1 é) is a bad line, not stored as another URL with U+FFFD', async () => {
    const file = Buffer.concat([Buffer.from('http://latin.example.com/'), Buffer.from([0xe9]), Buffer.from('t.jpg\nhttp://latin.example.com/\u00e9t.jpg\n')]);
    const { stats, bad } = await enqueueInput(t.db, file);
    assert.deepEqual(bad, ['1: not UTF-8: the line has bytes that are not UTF-8 (save the file as UTF-8)']);
    assert.equal(stats.inserted, 1);
    const rows = await t.db.selectFrom('live_images').select('image_url').execute();
    assert.deepEqual(rows, [{ image_url: 'http://latin.example.com/\u00e9t.jpg' }]);
  });

  it('`lis enqueue` reads standard input, reports bad lines on stderr and a summary', async () => {
    const input = ['http://x.com/a.jpg', 'javascript:alert(1)', '  # an indented comment', 'http://x.com/b.jpg', ''].join('\n');
    const run = spawnTs('bin/lis', ['--config', t.writeConfig(), 'enqueue', '--country', 'uk', '--datasource', '16', '-'], {}, input);
    const { code } = await run.exited;
    assert.equal(code, 0, run.output());
    assert.match(run.output(), /line 2: not an http or https URL/);
    assert.match(run.output(), /2 new, 0 already known \(last_seen refreshed\), 1 bad lines skipped, 4 lines read/);
    assert.doesNotMatch(run.output(), /line 3/, 'the comment is no bad line');
    const n = await t.db
      .selectFrom('live_images')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    assert.equal(Number(n.n), 2);
  });

  it('`lis enqueue` refuses a bad country or datasource flag before reading anything', async () => {
    const run = spawnTs('bin/lis', ['--config', t.writeConfig(), 'enqueue', '--country', 'united kingdom', '--datasource', '16'], {}, 'http://x.com/a.jpg\n');
    assert.equal((await run.exited).code, 2);
    assert.match(run.output(), /--country "united kingdom": expected a 2-3 letter country code/);
    const ds = spawnTs('bin/lis', ['--config', t.writeConfig(), 'enqueue', '--country', 'uk', '--datasource', '-4'], {}, '');
    assert.equal((await ds.exited).code, 2);
    assert.match(ds.output(), /--datasource "-4": expected a whole number/);
  });

  it('`lis enqueue` says in one line that its file is a folder, missing or unreadable (exit 1, no stack trace)', async () => {
    const enqueue = async (file: string) => {
      const run = spawnTs('bin/lis', ['--config', t.writeConfig(), 'enqueue', '--country', 'uk', '--datasource', '16', file]);
      return { code: (await run.exited).code, text: run.output() };
    };
    // Before: a folder surfaced mid-read as "error: Error: EISDIR: illegal operation on a directory, read".
    assert.deepEqual(await enqueue(t.dir), { code: 1, text: `error: ${t.dir} is a folder: give a file of URLs, or - for standard input\n` });
    const missing = path.join(t.dir, 'missing.txt');
    assert.deepEqual(await enqueue(missing), { code: 1, text: `error: no such file: ${missing}\n` });
  });

  it('takes an upper-case scheme as the table does, and a row the table still refuses is skipped alone', async () => {
    assert.deepEqual(parseUrlLine('HTTP://a.com/X.jpg', 16, 2048), { kind: 'url', datasourceId: 16, url: 'HTTP://a.com/X.jpg' });
    // A rule only the table knows (as a DBA might add one): the batch is split until the row is alone.
    await sql`ALTER TABLE live_images ADD CONSTRAINT test_no_blocked CHECK (image_url NOT LIKE '%/blocked/%')`.execute(t.db);
    const lines = Array.from({ length: 9 }, (_, i) => (i === 6 ? 'http://a.com/blocked/7.jpg' : `${i % 2 ? 'HTTP' : 'https'}://a.com/${i + 1}.jpg`));
    const { stats, bad } = await enqueueInput(t.db, lines.join('\n'), { batchSize: 5000 });
    assert.deepEqual(stats, { lines: 9, inserted: 8, refreshed: 0, bad: 1, noDatasource: 0 });
    assert.equal(bad.length, 1);
    assert.match(bad[0], /^7: refused by the table: .*test_no_blocked/);
    const stored = await t.db.selectFrom('live_images').select('image_url').where('image_url', 'like', 'HTTP:%').execute();
    assert.equal(stored.length, 4);
  });

  it("a URL only the table's own rule refuses (a scheme it does not take) is skipped alone, named by that rule", async () => {
    const rows = ['http://a.com/1.jpg', 'gopher://a.com/2.jpg', 'HTTPS://a.com/3.jpg', 's3://bucket/4.jpg'].map((url, i) => ({
      datasourceId: 16,
      url,
      line: i + 1,
    }));
    const outcome = await storeBatch(t.db, 'uk', rows);
    assert.deepEqual(outcome.failed, []);
    assert.equal(outcome.inserted, 3);
    assert.deepEqual(
      outcome.refused.map((r) => [r.row.line, r.reason]),
      [[2, 'refused by the table: new row for relation "live_images" violates check constraint "live_images_image_url_check"']],
    );
  });

  it('a batch that keeps failing is retried, then the run fails naming every line not stored', async () => {
    await poisonBatches(t.db);
    const lines = Array.from({ length: 16 }, (_, i) => (i === 5 ? 'http://a.com/poison/6.jpg' : `http://a.com/${i + 1}.jpg`));
    const error = await enqueueInput(t.db, lines.join('\n'), { batchSize: 4, retryDelaysMs: [1, 1] }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(error instanceof EnqueueIncompleteError, String(error));
    const storedLines = (await t.db.selectFrom('live_images').select('image_url').execute()).map((r) => Number(/\/(\d+)\.jpg$/.exec(r.image_url)![1]));
    const notStored = lines.map((_, i) => i + 1).filter((n) => !storedLines.includes(n));
    assert.ok(notStored.includes(5) && notStored.includes(8), 'the poisoned batch (lines 5-8) is not stored');
    // Every line not stored is named (read or not), none that was stored.
    const named = new Set(error.notStored);
    for (const n of notStored) assert.ok(named.has(n) || n > error.lastLineRead, `line ${n} is named or after the last line read`);
    for (const n of storedLines) assert.ok(!named.has(n), `line ${n} was stored`);
    assert.match(error.message, /poisoned batch/);
    assert.match(error.message, new RegExp(`lines ${lineRanges(error.notStored)}`));
    assert.equal(lineRanges([3, 4, 5, 9, 11, 12]), '3-5, 9, 11-12');
  });

  it('`lis enqueue` exits non-zero and names the lines when a batch cannot be stored', async () => {
    await poisonBatches(t.db);
    const input = ['http://x.com/1.jpg', 'http://x.com/2.jpg', 'http://x.com/poison/3.jpg', 'http://x.com/4.jpg'].join('\n');
    const run = spawnTs(
      'bin/lis',
      ['--config', t.writeConfig({ enqueue: { batchSize: 2 } }), 'enqueue', '--country', 'uk', '--datasource', '16', '-'],
      {},
      input,
    );
    assert.equal((await run.exited).code, 1, run.output());
    assert.match(run.output(), /error: \d+ lines not stored \(lines (3-4|2-4|1-4)\): .*poisoned batch/);
  });

  it('`lis enqueue` with no datasource anywhere stores nothing and says so with exit 2', async () => {
    const run = spawnTs('bin/lis', ['--config', t.writeConfig(), 'enqueue', '--country', 'uk', '-'], {}, 'http://x.com/a.jpg\nhttp://x.com/b.jpg\n');
    assert.equal((await run.exited).code, 2, run.output());
    assert.match(run.output(), /nothing stored: 2 lines name no datasource; give --datasource/);
  });
});
