// The rows a dead worker held are found through the backlog's index, not by reading the whole table: stuck_jobs
// runs it per dead worker every 30 s, and each daemon at its start. At 2.5M rows, `locked_by = X` alone read the
// table (15 workers of a host gone at once: 71 s of one stuck_jobs run); it must still find every held row.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { claimChunk } from '../src/queue/claim-chunk.ts';
import { heldBy, releaseAllHeldBy } from '../src/queue/release-rows.ts';
import { countBy, insertUrls } from './helpers/rows.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

describe('the rows a worker holds (releaseAllHeldBy)', () => {
  let t: TestDatabase;
  before(async () => (t = await createTestDatabase()));
  after(() => t.drop());

  it('are read through live_images_waiting, and every one is given back', async () => {
    await insertUrls(t.db, 'uk', 10);
    await insertUrls(t.db, 'fr', 4, { prefix: 'http://fr.example.com/' });
    await sql`UPDATE live_images SET stage = 'live', state = 'done' WHERE country = 'fr'`.execute(t.db);
    const claim = (workerId: string, limit: number) => claimChunk(t.db, { country: 'uk', stage: 'download', workerId, storeHost: '', limit, afterId: '0' });
    const held = await claim('dead', 6);
    await claim('alive', 2);
    assert.equal(held.length, 6);

    // Whether the planner can take the index at all (seq scans priced out): robust whatever the table's size.
    const plan = await t.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      const { rows } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN ${heldBy('dead')}`.execute(trx);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    assert.match(plan, /live_images_waiting/, plan);

    assert.equal(await releaseAllHeldBy(t.db, 'dead'), 6);
    assert.deepEqual(await countBy(t.db), { 'download/waiting': 8, 'download/waiting/locked': 2, 'live/done': 4 }, "the alive worker's 2 still held");
    const again = await claim('next', 10);
    assert.deepEqual(
      held.map((r) => r.id).filter((id) => !again.some((a) => a.id === id)),
      [],
      'every released row is claimable again',
    );
  });
});
