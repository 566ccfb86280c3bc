// The Interface against a database that hangs (the path silent, the server frozen): a call fails at its bound
// with ERR_DATABASE_TIMEOUT instead of holding a listing page for ever, and the same ImageSys works once the
// database answers again.
import assert from 'node:assert/strict';
import { ImageSys, lis_hash_for_url } from 'imagesys';
import { startDatabaseProxy, type DatabaseProxy } from './helpers/database-proxy.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('the Interface against a database that hangs', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let proxy: DatabaseProxy;
  const opened: ImageSys[] = [];
  const url = 'http://feed.example.com/listing/1/photo-1.jpg';
  const hash = lis_hash_for_url(url);
  const listing = { country: 'uk', datasourceId: 16 };

  beforeEach(async () => {
    t = await createTestDatabase();
    proxy = await startDatabaseProxy(t.url);
  });
  afterEach(async () => {
    // The path cut first: a call of a failed test still waiting on it ends, and close() need not wait for it.
    await proxy.cut();
    for (const images of opened.splice(0)) await images.close();
    await t.drop();
  });

  /** An ImageSys through the proxy, with the config's database section changed by `database`. */
  async function open(database: object, options: object = {}): Promise<ImageSys> {
    const images = await ImageSys.open({ config: { ...t.config, database: { ...t.config.database, url: proxy.url, ...database } }, ...options });
    opened.push(images);
    return images;
  }

  /** `call` fails as ERR_DATABASE_TIMEOUT, naming the method, the server and the bound that ran out. */
  async function notAnswering(method: string, call: () => Promise<unknown>, bound: RegExp): Promise<void> {
    await assert.rejects(call(), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_DATABASE_TIMEOUT', e.message);
      assert.match(e.message, new RegExp(`^ImageSys\\.${method}: the database at 127\\.0\\.0\\.1:${proxy.port}/\\w+ as \\w+ is not answering: `));
      assert.match(e.message, bound);
      return true;
    });
  }

  it("takes the config's bounds (database.connectTimeoutSeconds, queryTimeoutSeconds): each call fails at them, and works again once the path is back", async () => {
    const images = await open({ connectTimeoutSeconds: 1, queryTimeoutSeconds: 1.5 });
    assert.equal((await images.imagesForSiBuild([url], listing))[0].status, 'download');
    proxy.stall();
    // The pooled connection goes silent: a query bound; the calls after it connect into the silent path: a connect bound.
    await notAnswering('getSearchApiDataForHashes', () => images.getSearchApiDataForHashes([hash]), /no reply to a query in 1\.5 s/);
    const either = /no (reply to a query in 1\.5 s|answer to a connect in 1 s)/;
    await notAnswering('imagesForSiBuild', () => images.imagesForSiBuild([url], listing), either);
    await notAnswering('enqueue', () => images.enqueue([url], listing), either);
    // The single form is named as itself, not as the batch form it shares its work with.
    await notAnswering('getSearchApiDataForHash', () => images.getSearchApiDataForHash(hash), either);
    proxy.mend();
    assert.equal(await images.getSearchApiDataForHash(hash), null);
    assert.equal((await images.imagesForSiBuild([url], listing))[0].status, 'download');
    assert.deepEqual(await images.enqueue([url], listing), { inserted: 0, refreshed: 1, rejected: [] });
  });

  it("open's `bounds` override the config's (a page's own budget), for open itself and every call", async () => {
    // The config's bounds an hour long: only the option can end these calls within the test.
    const slow = { connectTimeoutSeconds: 3600, queryTimeoutSeconds: 3600 };
    const bounds = { connectMs: 800, queryMs: 1200 };
    const images = await open(slow, { bounds });
    await images.getSearchApiDataForHashes([hash]);
    proxy.stall();
    await notAnswering('getSearchApiDataForHashes', () => images.getSearchApiDataForHashes([hash]), /no reply to a query in 1\.2 s/);
    await notAnswering('imagesForSiBuild', () => images.imagesForSiBuild([url], listing), /no (reply to a query in 1\.2 s|answer to a connect in 0\.8 s)/);
    await assert.rejects(open(slow, { bounds }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_DATABASE_TIMEOUT', e.message);
      assert.match(e.message, /^ImageSys\.open: the database at .* is not answering: no answer to a connect in 0\.8 s/);
      return true;
    });
    proxy.mend();
    assert.equal((await images.imagesForSiBuild([url], listing))[0].status, 'download');
  });

  it('calls waiting for a connection of the pool fail at the bounds too, instead of queueing behind a database that hangs', async () => {
    // Before: each call waited its turn for one of the 2 connections, then for its own connect bound: the last of
    // 60 failed after 7.2 s with a 0.2 s bound (after 30 s or more with these), and a busy page's calls queued without
    // end. Bounds of 1 s and 1.5 s, not 0.2 and 0.3: open() connects within the connect bound too, and on a loaded
    // machine (CI's two cores under three test workers) a connect and its authentication took longer than 0.2 s.
    const images = await open({ poolSize: 2 }, { bounds: { connectMs: 1000, queryMs: 1500 } });
    await images.getSearchApiDataForHashes([hash]);
    proxy.stall();
    const started = Date.now();
    const failures = await Promise.all(
      Array.from({ length: 60 }, () =>
        images.getSearchApiDataForHash(hash).then(
          () => 'answered',
          (e: Error & { code?: string }) => `${e.code}: ${e.message.replace(/ at \S+ as \w+/, '')}`,
        ),
      ),
    );
    const elapsed = Date.now() - started;
    // The one on the pooled connection takes the query bound and pg's grace for the server's cancel (2 s): 3.5 s,
    // against 30 s or more when the calls queued.
    assert.ok(elapsed < 10_000, `all 60 failed within ${elapsed} ms`);
    const kinds = [...new Set(failures.map((f) => f.replace(/ in [\d.]+ s$/, '')))].sort();
    assert.deepEqual(kinds, [
      'ERR_DATABASE_TIMEOUT: ImageSys.getSearchApiDataForHash: the database is not answering: no answer to a connect',
      'ERR_DATABASE_TIMEOUT: ImageSys.getSearchApiDataForHash: the database is not answering: no connection of its pool (database.poolSize) free within a connect and a query bound',
      'ERR_DATABASE_TIMEOUT: ImageSys.getSearchApiDataForHash: the database is not answering: no reply to a query',
    ]);
    proxy.mend();
    assert.equal(await images.getSearchApiDataForHash(hash), null, 'works again once the database answers');
  });

  it('refuses bounds that are not positive numbers of milliseconds, as ERR_USAGE naming them', async () => {
    for (const bounds of [{ queryMs: 0 }, { connectMs: -1 }, { queryMs: '5' }, { connectMs: Infinity }, 'fast'])
      await assert.rejects(open({}, { bounds }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ERR_USAGE', e.message);
        assert.match(e.message, /^ImageSys\.open: bounds/);
        return true;
      });
  });
});
