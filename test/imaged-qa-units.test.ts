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

  it('a started run is told once every request for it has gone (its `unwanted` signal), and a new request for its key starts a run of its own', async () => {
    const gate = new GenerationGate<string>(2, 2);
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const told: boolean[] = [];
    const make = (name: string) => async (unwanted: AbortSignal) => {
      await blocked;
      told.push(unwanted.aborted);
      return name;
    };
    const one = new AbortController();
    const two = new AbortController();
    const first = gate.run('a', make('first'), one.signal);
    const joined = gate.run('a', make('never'), two.signal);
    one.abort();
    assert.deepEqual(gate.stats, { running: 1, waiting: 1, keys: 1 }, 'still wanted by the second request');
    two.abort();
    await Promise.all([assert.rejects(first, RequestGoneError), assert.rejects(joined, RequestGoneError)]);
    const again = gate.run('a', make('again'));
    assert.deepEqual(gate.stats, { running: 2, waiting: 0, keys: 1 }, 'a run of its own, not one that may give up');
    release();
    assert.equal(await again, 'again');
    assert.deepEqual(told.sort(), [false, true], 'the abandoned run was told, the new one not');
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
