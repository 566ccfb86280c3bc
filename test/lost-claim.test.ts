// releaseHeldExcept: the rows of a claim whose answer was lost are given back, and nothing else.
import assert from 'node:assert/strict';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { releaseHeldExcept } from '../src/queue/release-rows.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('giving back a lost claim (releaseHeldExcept)', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(() => t.drop());

  it("gives back, uncharged and claimable again, only the worker's rows in its scope that no chunk in hand holds", async () => {
    await insertUrls(t.db, 'uk', 12);
    const claim = (workerId: string, limit: number) => claimChunk(t.db, { country: 'uk', stage: 'download', workerId, storeHost: '', limit, afterId: '0' });
    const inHand = await claim('a', 4);
    const lost = await claim('a', 3);
    const others = await claim('b', 2);
    const scope = { workerId: 'a', country: 'uk', stage: 'download' as const, storeHost: '' };
    assert.equal(
      await releaseHeldExcept(
        t.db,
        scope,
        inHand.map((r) => r.id),
      ),
      lost.length,
    );
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 6, 'download/waiting/locked': 6 }, "the chunk in hand's 4 and b's 2 still held");
    const free = await unlockedIds();
    assert.ok(
      lost.every((r) => free.includes(r.id)),
      'the lost rows are free',
    );
    const again = await claim('c', 12);
    assert.deepEqual(again.map((r) => r.id).sort(), free.sort(), 'every free row is claimable again, the lost ones with those never claimed');
    assert.ok(
      again.every((r) => r.attempts === 0),
      'no attempt charged',
    );
    assert.equal(others.length, 2);
    // Another scope of the same worker id (a thumbnail stage on another host) is not this claim's: untouched.
    assert.equal(await releaseHeldExcept(t.db, { ...scope, country: 'de' }, []), 0);
  });

  async function unlockedIds(): Promise<string[]> {
    const rows = await t.db.selectFrom('live_images').select('id').where('locked_by', 'is', null).execute();
    return rows.map((r) => r.id);
  }
});
