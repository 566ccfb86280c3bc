/** What the runner does after a claim that gained no rows. */
export type AfterEmptyClaim = 'wait for chunks' | 'claim again' | 'end' | 'wait for work';

/**
 * Pure: the runner's next step after a claim gained no rows. `heldAtStart`: a chunk was in hand, or giving
 * its rows back, when the claim started; `heldNow`: one still is.
 *
 * A chunk in hand counts as work: once it gives back what it did not finish, those rows are claimable, and a
 * run by hand that ended before would leave them behind unsaid. So does one that gave them back while the
 * claim ran: the claim read the queue before that give-back committed, so its "nothing" says nothing of them,
 * and the next claim will see them. (Judged only by the chunks held once the claim returned, a run by hand
 * that gives rows back chunk after chunk ended, now and then, with rows claimable and "No work to do".)
 */
export function afterEmptyClaim(heldAtStart: boolean, heldNow: boolean, service: boolean): AfterEmptyClaim {
  if (heldNow) return 'wait for chunks';
  if (heldAtStart) return 'claim again';
  return service ? 'wait for work' : 'end';
}
