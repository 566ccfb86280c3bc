import assert from 'node:assert/strict';
import { StrayRows, straysGivenBackLine } from '../src/daemon/stray-rows.ts';

describe('StrayRows: what the daemon runner remembers of rows it may hold that no chunk in hand does', () => {
  it('holds none at first; a refused give-back makes its rows strays, which the stop mark counts', () => {
    const strays = new StrayRows();
    assert.equal(strays.mayHold, false);
    assert.equal(strays.forStopMark, 0);
    strays.strayed(7);
    strays.strayed(3);
    assert.equal(strays.mayHold, true);
    assert.equal(strays.forStopMark, 10);
  });

  it('a lost claim answer (no count known) still marks the stop as holding at least one row', () => {
    const strays = new StrayRows();
    strays.strayed(0);
    assert.equal(strays.forStopMark, 1);
  });

  it('a give-back clears the strays, unless more strayed while it ran', () => {
    const strays = new StrayRows();
    strays.strayed(4);
    const since = strays.mark();
    strays.strayed(0); // a claim failed while the give-back ran: it may hold rows the give-back did not see
    assert.deepEqual(strays.givenBack(since), { refused: 4, afterLostConnection: false });
    assert.equal(strays.mayHold, true, 'kept: the give-back may not cover the later stray');
    const again = strays.mark();
    strays.givenBack(again);
    assert.equal(strays.mayHold, false);
    assert.equal(strays.forStopMark, 0);
  });

  it('a connection lost since the last look makes strays possible, said once, until a give-back clears them', () => {
    let lost = 2;
    const strays = new StrayRows(() => lost);
    strays.lookForLostConnections();
    assert.equal(strays.mayHold, false, 'connections lost before the start are not ours to look for');
    lost = 3;
    assert.equal(strays.connectionLostSinceLastLook, true);
    strays.lookForLostConnections();
    assert.equal(strays.mayHold, true);
    assert.equal(strays.connectionLostSinceLastLook, false);
    const why = strays.givenBack(strays.mark());
    assert.deepEqual(why, { refused: 0, afterLostConnection: true });
    strays.strayed(0);
    assert.deepEqual(strays.givenBack(strays.mark()), { refused: 0, afterLostConnection: false }, 'the loss was told once');
  });

  it('clear() at the end forgets refused rows', () => {
    const strays = new StrayRows();
    strays.strayed(5);
    strays.clear();
    assert.equal(strays.mayHold, false);
    assert.equal(strays.forStopMark, 0);
  });

  it('the give-back line says why the rows were held: refused, a lost connection, or a lost claim answer', () => {
    assert.match(straysGivenBackLine(5, { refused: 5, afterLostConnection: true }), /^Gave back 5 rows the database had refused to take back/);
    assert.match(straysGivenBackLine(2, { refused: 0, afterLostConnection: true }), /after a lost connection: a database restored from a backup/);
    assert.match(
      straysGivenBackLine(1, { refused: 0, afterLostConnection: false }),
      /a failed claim had taken \(the server committed it, its answer was lost\)/,
    );
  });
});
