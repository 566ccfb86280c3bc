import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { relistAll } from './helpers/rows.ts';
import { createDb } from '../src/db/connect.ts';
import { migrateToLatest, migrator } from '../src/db/migrate-schema.ts';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { finishRows } from '../src/queue/finish-rows.ts';
import { maskUrlPasswords } from '../src/util/mask-url-password.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('migrations', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase({ migrated: false })));
  afterEach(async () => t.drop());

  it('build the schema from an empty database, and several at once is safe', async () => {
    const dbs = Array.from({ length: 4 }, () => createDb(t.url, 1));
    try {
      const results = await Promise.all(dbs.map((db) => migrateToLatest(db)));
      const applied = results
        .flat()
        .filter((r) => r.status === 'Success')
        .map((r) => r.migrationName);
      assert.equal(new Set(applied).size, applied.length, 'each migration applied once');
      assert.ok(applied.length >= 1);
    } finally {
      await Promise.all(dbs.map((db) => db.destroy()));
    }
    const { rows } = await sql<{ table_name: string }>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT LIKE 'kysely%' ORDER BY 1`.execute(t.db);
    const tables = rows.map((r) => r.table_name);
    for (const table of ['datasources', 'frontend_pushes', 'frontends', 'live_images', 'workers', 'worker_minutes', 'manager_events']) {
      assert.ok(tables.includes(table), `${table} exists`);
    }
    assert.deepEqual(await migrateToLatest(t.db), [], 'a second run finds nothing to do');
  });

  it('claims through claimable_rows and its index, which lists only the claimable rows', async () => {
    await migrateToLatest(t.db);
    await sql`INSERT INTO live_images (country, datasource_id, image_url) SELECT 'uk', 1, 'http://a.com/' || g FROM generate_series(1, 20000) g`.execute(t.db);
    // Set-up by hand (no trigger sees it): most rows live, the list rebuilt as the queue's operations keep it.
    await sql`UPDATE live_images SET stage = 'live', state = 'done' WHERE id % 10 <> 0`.execute(t.db);
    await relistAll(t.db);
    const {
      rows: [listed],
    } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM claimable_rows`.execute(t.db);
    assert.equal(listed.n, 2000, 'only the claimable rows are listed');
    await sql`ANALYZE claimable_rows`.execute(t.db);
    const { rows } = await sql<{ 'QUERY PLAN': string }>`
      EXPLAIN SELECT ctid FROM claimable_rows
       WHERE country = 'uk' AND stage = 'download' AND store_host = '' AND priority = 0 AND id > 0 AND next_attempt_at <= now()
       ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED`.execute(t.db);
    assert.match(rows.map((r) => r['QUERY PLAN']).join('\n'), /Index Scan using claimable_rows_claim/);
  });

  it("checks a row's country and image_url when a statement writes them, with a CHECK's error, and not on the queue's updates", async () => {
    await migrateToLatest(t.db);
    await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES
                ('uk', 1, 'http://a.com/1.jpg'), ('fr', 1, 'HTTPS://a.com/2.jpg'), ('uk', 1, 's3://b/3.jpg'), ('uk', 1, 'file:///o/4.jpg')`.execute(t.db);
    const refusals: Array<[ReturnType<typeof sql>, string]> = [
      [sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('UK', 1, 'http://a.com/5.jpg')`, 'live_images_country_check'],
      [sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, 'ftp://a.com/5.jpg')`, 'live_images_image_url_check'],
      [sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('uk', 1, 'a.com/5.jpg') ON CONFLICT DO NOTHING`, 'live_images_image_url_check'],
      [sql`UPDATE live_images SET image_url = 'http:/a.com/1.jpg' WHERE image_url = 'http://a.com/1.jpg'`, 'live_images_image_url_check'],
      [sql`UPDATE live_images SET country = 'u' WHERE country = 'fr'`, 'live_images_country_check'],
    ];
    for (const [statement, constraint] of refusals) {
      const error = (await statement.execute(t.db).then(
        () => null,
        (e: unknown) => e,
      )) as { code?: string; constraint?: string; message?: string } | null;
      assert.deepEqual(
        { code: error?.code, constraint: error?.constraint, message: error?.message },
        { code: '23514', constraint, message: `new row for relation "live_images" violates check constraint "${constraint}"` },
      );
    }
    // A row that breaks the rules (written with the trigger off, as a restore may): the rules are not what a
    // claim or a finish pays for, so they go through; a CHECK would refuse both.
    await sql`ALTER TABLE live_images DISABLE TRIGGER live_images_country_url_check`.execute(t.db);
    await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('XX1', 1, 'gopher://a.com/6.jpg')`.execute(t.db);
    await sql`ALTER TABLE live_images ENABLE TRIGGER live_images_country_url_check`.execute(t.db);
    const claimed = await claimChunk(t.db, { country: 'XX1', stage: 'download', workerId: 'w1', storeHost: '', limit: 10, afterId: '0' });
    assert.deepEqual(
      claimed.map((r) => r.image_url),
      ['gopher://a.com/6.jpg'],
    );
    assert.equal(await finishRows(t.db, 'w1', 'download', [{ id: claimed[0].id, set: { original_bytes: 10 } }]), 1);
  });

  it("gives each row's same-error streak its own class: the last error's, where there is a streak", async () => {
    const before = await migrator(t.db).migrateTo('2026-11-30T01-alerts-delivered');
    assert.equal(before.error, undefined);
    await sql`INSERT INTO live_images (country, datasource_id, image_url, same_error_count, last_error_class) VALUES
                ('uk', 1, 'http://a.com/streak.jpg', 3, 'timeout'),
                ('uk', 1, 'http://a.com/deferred-only.jpg', 0, 'store_paused'),
                ('uk', 1, 'http://a.com/new.jpg', 0, NULL)`.execute(t.db);
    await migrateToLatest(t.db);
    const { rows } = await sql<{ image_url: string; streak_class: string | null }>`
      SELECT image_url, streak_class FROM live_images ORDER BY id`.execute(t.db);
    assert.deepEqual(rows, [
      { image_url: 'http://a.com/streak.jpg', streak_class: 'timeout' },
      { image_url: 'http://a.com/deferred-only.jpg', streak_class: null },
      { image_url: 'http://a.com/new.jpg', streak_class: null },
    ]);
  });
  it('masks the URL passwords in reasons recorded before they were masked, as maskUrlPasswords does, and nothing else', async () => {
    const before = await migrator(t.db).migrateTo('2026-12-01T00-frontend-down-host');
    assert.equal(before.error, undefined);
    const texts = [
      'http_404: HTTP 404 for http://feed:s3cr%40t@img.example.com/a/1.jpg',
      'connection: connect ECONNREFUSED for HTTPS://User:Pa:ss@Host.example:8443/x.jpg?w=1 and s3://key:secret@bucket/k.jpg',
      'timeout: http://feed@img.example.com/no-password.jpg (a user with no password is no secret)',
      'http_500: http://feed:***@img.example.com/already-masked.jpg',
      'corrupt_image: mail ops@example.com, ratio 1:2 @ 50%',
      'dns: getaddrinfo EAI_AGAIN img.example.com',
    ];
    const hashes = texts.map((_, i) => `h${i}`);
    await sql`INSERT INTO live_images (country, datasource_id, image_url, last_error)
              SELECT 'uk', 1, 'http://a.com/' || i, t FROM unnest(${texts}::text[]) WITH ORDINALITY AS x(t, i)`.execute(t.db);
    await sql`INSERT INTO datasources (country, datasource_id, enabled, disabled_reason)
              SELECT 'uk', i, false, t FROM unnest(${texts}::text[]) WITH ORDINALITY AS x(t, i)`.execute(t.db);
    await sql`INSERT INTO manager_events (check_name, subject, rows, detail)
              SELECT 'bad_datasources', t, 1, t FROM unnest(${texts}::text[]) AS x(t)`.execute(t.db);
    await sql`INSERT INTO frontends (name, target, down_since, down_reason)
              SELECT 'n' || i, 'rsync://127.0.0.1/n' || i, now(), t FROM unnest(${texts}::text[]) WITH ORDINALITY AS x(t, i)`.execute(t.db);
    await sql`INSERT INTO frontend_pushes (frontend, country, image_hash, last_error)
              SELECT 'n1', 'uk', h, t FROM unnest(${texts}::text[], ${hashes}::text[]) AS x(t, h)`.execute(t.db);
    await sql`INSERT INTO alerts_sent (key, kind, subject) SELECT 'k' || i, 'datasource_disabled', t
                FROM unnest(${texts}::text[]) WITH ORDINALITY AS x(t, i)`.execute(t.db);
    await sql`INSERT INTO workers (id, component, host, pid, paused_reason)
              SELECT 'w' || i, 'lis_downloadd', 'h', 1, t FROM unnest(${texts}::text[]) WITH ORDINALITY AS x(t, i)`.execute(t.db);
    await migrateToLatest(t.db);
    const expected = texts.map(maskUrlPasswords);
    assert.equal(expected[0], 'http_404: HTTP 404 for http://feed:***@img.example.com/a/1.jpg', 'the rule itself, as a check of the list');
    const read = async (query: ReturnType<typeof sql<{ v: string }>>) => (await query.execute(t.db)).rows.map((r) => r.v);
    assert.deepEqual(await read(sql`SELECT last_error AS v FROM live_images ORDER BY id`), expected, 'live_images.last_error');
    assert.deepEqual(await read(sql`SELECT disabled_reason AS v FROM datasources ORDER BY datasource_id`), expected, 'datasources.disabled_reason');
    assert.deepEqual(await read(sql`SELECT detail AS v FROM manager_events ORDER BY id`), expected, 'manager_events.detail');
    assert.deepEqual(await read(sql`SELECT subject AS v FROM manager_events ORDER BY id`), expected, 'manager_events.subject');
    assert.deepEqual(await read(sql`SELECT down_reason AS v FROM frontends ORDER BY substr(name, 2)::int`), expected, 'frontends.down_reason');
    assert.deepEqual(await read(sql`SELECT last_error AS v FROM frontend_pushes ORDER BY substr(image_hash, 2)::int`), expected, 'frontend_pushes.last_error');
    assert.deepEqual(await read(sql`SELECT subject AS v FROM alerts_sent ORDER BY substr(key, 2)::int`), expected, 'alerts_sent.subject');
    assert.deepEqual(await read(sql`SELECT paused_reason AS v FROM workers ORDER BY substr(id, 2)::int`), expected, 'workers.paused_reason');
  });
});
