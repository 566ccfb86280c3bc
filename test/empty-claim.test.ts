import assert from 'node:assert/strict';
import { afterEmptyClaim } from '../src/daemon/empty-claim.ts';

describe('afterEmptyClaim: what the runner does when a claim gains no rows', () => {
  it('waits for a chunk still in hand or giving its rows back, by hand or as a service', () => {
    for (const service of [false, true]) {
      assert.equal(afterEmptyClaim(true, true, service), 'wait for chunks');
      assert.equal(afterEmptyClaim(false, true, service), 'wait for chunks');
    }
  });

  it('claims again when a chunk gave its rows back while the claim ran: the claim read the queue before they were back', () => {
    assert.equal(afterEmptyClaim(true, false, false), 'claim again', 'a run by hand does not end with them claimable and unsaid');
    assert.equal(afterEmptyClaim(true, false, true), 'claim again', 'a service does not wait for a poll or a wake-up for them');
  });

  it('with nothing held before or after: a run by hand ends, a service waits for work', () => {
    assert.equal(afterEmptyClaim(false, false, false), 'end');
    assert.equal(afterEmptyClaim(false, false, true), 'wait for work');
  });
});
