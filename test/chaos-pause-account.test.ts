import assert from 'node:assert/strict';
import { pauseAccount } from '../bench/lib/chaos.ts';

describe('bench:chaos: the store pauses, accounted per process', () => {
  const line = (pid: number, message: string) => `Dec 01 03:32:10 INFO Thumbnail::store[${pid}]:UK ${message}`;
  const pause = (pid: number) => line(pid, 'Store not writable, pausing (no rows claimed, none charged): ENOSPC: ...; looking again with backoff up to 60s');
  const resume = (pid: number) => line(pid, 'Store writable again, resuming: ENOSPC: ... is over');

  it('a process paused and never resumed is found, unless it was killed while paused', () => {
    const log = [pause(10), pause(11), resume(10), pause(12), line(13, 'Starting thumbnaild'), pause(10)].join('\n');
    assert.deepEqual(pauseAccount(log, new Set([11])), { pauses: 4, resumes: 1, killedPaused: 1, unresumed: [10, 12] });
    assert.deepEqual(pauseAccount(log, new Set([10, 11, 12])), { pauses: 4, resumes: 1, killedPaused: 3, unresumed: [] });
  });

  it('counts a readable store the same way, and nothing in lines of other scopes', () => {
    const log = [
      'Dec 01 03:32:10 ERROR Thumbnail::store[20]:FR Store not readable, pausing (no rows claimed, none charged): ENOENT',
      'Dec 01 03:32:11 INFO Thumbnail::store[20]:FR Store readable again, resuming: ENOENT is over',
      'Dec 01 03:32:12 INFO Thumbnail::main[21]:FR quoting "Store not writable, pausing" elsewhere',
    ].join('\n');
    assert.deepEqual(pauseAccount(log, new Set()), { pauses: 1, resumes: 1, killedPaused: 0, unresumed: [] });
  });
});
