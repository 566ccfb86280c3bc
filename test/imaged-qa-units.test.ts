import assert from 'node:assert/strict';
import { BusyError, GenerationGate, RequestGoneError } from '../src/imaged/generation-gate.ts';

describe('lis_imaged QA units: the generation gate and requests that go away', () => {
  it('a request that goes away frees its waiting place; a queued run nobody wants leaves unstarted; a started run is finished', async () => {
    const gate = new GenerationGate<string>(1, 2);
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const made: string[] = [];
    const make = (key: string) => async () => {
      made.push(key);
      await blocked;
      return key;
    };
    const first = new AbortController();
    const running = gate.run('a', make('a'), first.signal);
    const queuedGone = new AbortController();
    const queued = gate.run('b', make('b'), queuedGone.signal);
    const joinerGone = new AbortController();
    const joiner = gate.run('a', make('a'), joinerGone.signal);
    assert.deepEqual(gate.stats, { running: 1, waiting: 2, keys: 2 });
    await assert.rejects(gate.run('c', make('c')), BusyError, 'full while they wait');

    queuedGone.abort();
    joinerGone.abort();
    await assert.rejects(queued, RequestGoneError);
    await assert.rejects(joiner, RequestGoneError);
    assert.deepEqual(gate.stats, { running: 1, waiting: 0, keys: 1 }, 'their places are free, b is out of the queue');
    const later = gate.run('c', make('c'));

    // The first request goes too: its run has started and is finished all the same (its file, its row).
    first.abort();
    await assert.rejects(running, RequestGoneError);
    release();
    assert.equal(await later, 'c');
    assert.deepEqual(made, ['a', 'c'], 'b never started; a finished');
    assert.deepEqual(gate.stats, { running: 0, waiting: 0, keys: 0 });
  });

  it('a queued run that one of its requests still wants stays queued when another goes', async () => {
    const gate = new GenerationGate<string>(1, 3);
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const running = gate.run('a', async () => {
      await blocked;
      return 'a';
    });
    const gone = new AbortController();
    const one = gate.run('b', () => Promise.resolve('b'), gone.signal);
    const other = gate.run('b', () => Promise.resolve('never'));
    gone.abort();
    await assert.rejects(one, RequestGoneError);
    release();
    assert.deepEqual(await Promise.all([running, other]), ['a', 'b']);
  });
});
