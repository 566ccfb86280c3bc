import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { isImageHash, lis_hash_for_url, lis_path_for_hash, storePath } from '../src/hash/image-hash.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('image hashing', () => {
  let t: TestDatabase;
  before(async () => (t = await createTestDatabase()));
  after(async () => t.drop());

  it('hashes the documented vector in TypeScript', () => {
    assert.equal(lis_hash_for_url('http://a.com/b.jpg'), 'a30ff540a1a736f738146ac899d94375');
    assert.equal(lis_path_for_hash('a30ff540a1a736f738146ac899d94375'), 'a3/0f/a30ff540a1a736f738146ac899d94375');
    assert.equal(storePath('/s', 'uk', 'a30ff540a1a736f738146ac899d94375'), '/s/uk/a3/0f/a30ff540a1a736f738146ac899d94375');
  });

  it('computes the same hash in the database, for plain and unusual URLs', async () => {
    const urls = [
      'http://a.com/b.jpg',
      'https://img.example.co.uk/photos/12345/large.JPG?w=800&h=600',
      'http://例え.テスト/写真.jpg',
      'http://a.com/%20space%20/x.png',
      `http://a.com/${'x'.repeat(1500)}.jpg`,
    ];
    await t.db
      .insertInto('live_images')
      .values(urls.map((image_url) => ({ country: 'uk', datasource_id: 1, image_url })))
      .execute();
    const rows = await t.db.selectFrom('live_images').select(['image_url', 'image_hash']).execute();
    assert.equal(rows.length, urls.length);
    for (const row of rows) {
      assert.equal(row.image_hash, lis_hash_for_url(row.image_url), row.image_url);
      assert.ok(isImageHash(row.image_hash));
    }
    const { rows: fn } = await sql<{
      h: string;
      p: string;
    }>`SELECT lis_hash_for_url('http://a.com/b.jpg') AS h, lis_path_for_hash(lis_hash_for_url('http://a.com/b.jpg')) AS p`.execute(t.db);
    assert.deepEqual(fn[0], { h: 'a30ff540a1a736f738146ac899d94375', p: 'a3/0f/a30ff540a1a736f738146ac899d94375' });
  });

  it('refuses to make a path from something that is not a hash, and to hash what is not a string, as ERR_USAGE naming the argument', () => {
    const usage = (message: RegExp) => (error: Error & { code?: string }) => error.code === 'ERR_USAGE' && message.test(error.message);
    const notHash = /^lis_path_for_hash: hash must be an image hash \(32 lowercase hex digits\), got /;
    assert.throws(() => lis_path_for_hash('../../etc/passwd'), usage(notHash));
    assert.throws(() => lis_path_for_hash('A30FF540A1A736F738146AC899D94375'), usage(notHash));
    assert.throws(() => lis_path_for_hash('zz'), usage(/got "zz"$/));
    // As plain JavaScript would call them.
    assert.throws(() => (lis_path_for_hash as (h: unknown) => string)(undefined), usage(/got undefined$/));
    assert.throws(() => (lis_hash_for_url as (u: unknown) => string)(undefined), usage(/^lis_hash_for_url: url must be a string, got undefined$/));
    assert.throws(() => (lis_hash_for_url as (u: unknown) => string)(null), usage(/got null$/));
  });

  it('lets an ETL queue an image with a plain INSERT of country, datasource and URL', async () => {
    await sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('fr', 16, 'http://a.com/b.jpg')`.execute(t.db);
    const row = await t.db.selectFrom('live_images').selectAll().where('country', '=', 'fr').executeTakeFirstOrThrow();
    assert.equal(row.image_hash, 'a30ff540a1a736f738146ac899d94375');
    assert.equal(row.stage, 'download');
    assert.equal(row.state, 'waiting');
    await assert.rejects(
      sql`INSERT INTO live_images (country, datasource_id, image_url) VALUES ('fr', 17, 'http://a.com/b.jpg')`.execute(t.db),
      /live_images_country_hash/,
    );
  });
});
