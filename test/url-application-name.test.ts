import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { clientUrl } from '../src/db/client-config.ts';
import { createDb } from '../src/db/connect.ts';
import { holderName, takeClusterPart } from '../src/cron/cluster-lock.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** `url` with `?application_name=` (an operator's, for their monitoring), as pg reads a URL's parameters. */
const named = (url: string, name: string) => `${url}${url.includes('?') ? '&' : '?'}application_name=${encodeURIComponent(name)}`;

describe("a database URL naming its sessions (application_name): ImageSys's own names stand", () => {
  let t: TestDatabase;
  beforeEach(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => {
    await t.drop();
  });

  it('is dropped from the URL pg is given, the rest of the URL kept', () => {
    const given = 'postgres://lis:p%40ss@db1:5432/imagesys?application_name=monitoring&sslmode=require';
    const url = clientUrl(given);
    assert.doesNotMatch(url, /application_name/);
    const read = new URL(url);
    assert.equal(read.password, 'p%40ss');
    assert.equal(read.searchParams.get('sslmode'), 'require');
  });

  it("sessions are named by us, so a dead upkeep run of this host is still found by its session's name and ended", async () => {
    const url = named(t.url, 'monitoring');
    const db = createDb(url, 1);
    try {
      const { rows } = await sql<{ name: string }>`SELECT current_setting('application_name') AS name`.execute(db);
      assert.match(rows[0].name, /^imagesys:/, 'the pool names its sessions');
      // A run of this host under way, its process gone (a pid not running here), its session still on the server.
      const stale = new pg.Client({ connectionString: clientUrl(url), application_name: holderName('web1', 4_000_000) });
      stale.on('error', () => {}); // ended by the takeover: asserted below
      await stale.connect();
      try {
        await stale.query(`SELECT pg_advisory_lock(x'75706b70'::int, hashtext('uk'))`);
        // Before: the URL's name was every session's, the holder's name said no host and pid, and the lock stayed taken.
        const part = await takeClusterPart(url, db, 'uk', { host: 'web1', pid: process.pid }, { connectMs: 10_000, queryMs: 10_000 }, () => {});
        assert.equal(part.held, true, part.held ? '' : part.holder);
        if (part.held) {
          assert.match(part.tookOver ?? '', /lis_cron_frontend on web1 pid 4000000/);
          await part.release();
        }
      } finally {
        await stale.end().catch(() => {});
      }
    } finally {
      await db.destroy();
    }
  });
});
