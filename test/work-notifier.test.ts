import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { serviceQueryBounds } from '../src/db/query-bounds.ts';
import { WorkNotifier } from '../src/queue/work-notifier.ts';
import { waitFor } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';
import { within } from './helpers/within-deadline.ts';

describe('WorkNotifier: an idle daemon woken by the queue', () => {
  let t: TestDatabase;
  let notifier: WorkNotifier;
  beforeEach(async () => {
    t = await createTestDatabase();
    notifier = new WorkNotifier(t.url, 'uk:download', { warn: () => {}, info: () => {} }, { bounds: serviceQueryBounds(t.config), checkEveryMs: 60_000 });
    await notifier.start();
  });
  afterEach(async () => {
    await notifier.close();
    await t.drop();
  });

  const notify = (topic: string) => sql`SELECT pg_notify('lis_work', ${topic})`.execute(t.db);

  it('a notification for its topic that came while a claim ran ends the wait after it at once; others do not count', async () => {
    const atClaim = notifier.mark();
    await notify('de:download'); // another country's daemon's
    await notify('uk:thumbnail'); // another stage's
    await notify('uk:download'); // ours: rows committed after the claim's snapshot
    await waitFor(() => notifier.mark() > atClaim, 20_000, 'the notification received');
    assert.equal(notifier.mark(), atClaim + 1, 'only our topic wakes');
    // The poll's wait is an hour: only the notification already received can end it within the deadline.
    const waiting = new AbortController();
    await within(notifier.wait(3_600_000, waiting.signal, atClaim), 'the wait after the claim', 20_000);
  });

  it('a wait with no notification since its mark ends on the next one', async () => {
    const waiting = new AbortController();
    const woken = notifier.wait(3_600_000, waiting.signal, notifier.mark());
    await notify('uk:download');
    await within(woken, 'the wait, woken by the notification', 20_000);
  });
});
