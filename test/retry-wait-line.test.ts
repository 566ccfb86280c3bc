import assert from 'node:assert/strict';
import { disabledDatasourcesLine, heldRowsLine, retryWaitLine } from '../src/daemon/progress-line.ts';
import type { RetryWaits } from '../src/queue/retry-waits.ts';

/** Local times, as the line shows them. */
const at = (day: number, h: number, m: number, s: number, ms = 0) => new Date(2026, 10, day, h, m, s, ms);
const now = at(30, 14, 55, 0);

function waits(overrides: Partial<RetryWaits>): Omit<RetryWaits, 'dbNow'> {
  return { rows: 10, first: at(30, 15, 2, 11), last: at(30, 15, 2, 11), reason: null, errorClass: null, otherReasons: 0, ...overrides };
}

describe('retryWaitLine: what a run by hand says of the rows it leaves waiting for a retry', () => {
  it('says nothing when no row waits', () => {
    assert.equal(retryWaitLine(waits({ rows: 0, first: null, last: null }), now), null);
  });

  it('names how many, until when (rounded up to the second) and why', () => {
    const line = retryWaitLine(
      waits({ first: at(30, 15, 2, 10, 400), last: at(30, 15, 2, 10, 900), errorClass: 'frontend_down', reason: 'not on n2 (connection refused)' }),
      now,
    );
    assert.equal(line, '10 rows wait for a retry until 15:02:11 (frontend_down: not on n2 (connection refused)); run again then, or start the service.');
  });

  it('gives the span when they come due at different times, the other reasons, and one row in the singular', () => {
    assert.equal(
      retryWaitLine(waits({ rows: 1_200, first: at(30, 14, 56, 1), errorClass: 'http_503', reason: 'HTTP 503', otherReasons: 2 }), now),
      '1,200 rows wait for a retry from 14:56:01 until 15:02:11 (http_503: HTTP 503; and 2 other reasons); run again then, or start the service.',
    );
    assert.equal(
      retryWaitLine(waits({ rows: 1, errorClass: 'frontend_down', otherReasons: 1 }), now),
      '1 row waits for a retry until 15:02:11 (frontend_down; and 1 other reason); run again then, or start the service.',
    );
  });

  it('puts the date on a time that is not today, and cuts a long reason to its first words', () => {
    const line = retryWaitLine(waits({ last: new Date(2026, 11, 1, 9, 0, 0), errorClass: 'frontend_down', reason: `rsync:\n${'x'.repeat(400)}` }), now)!;
    assert.match(line, / from 15:02:11 until Dec 01 09:00:00 \(frontend_down: rsync: x+\.\.\.\); run again then/);
    assert.equal(line.match(/x+/)![0].length, 200 - 'rsync: '.length - 3);
  });

  it('says nothing of why when the rows carry no reason', () => {
    assert.equal(retryWaitLine(waits({}), now), '10 rows wait for a retry until 15:02:11; run again then, or start the service.');
  });
});

describe('heldRowsLine: what a run by hand says of the rows other workers hold', () => {
  it('says nothing when no other worker holds a row of its scope', () => {
    assert.equal(heldRowsLine({ rows: 0, workers: 0, topWorker: null, topHeartbeat: null }, now, 60), null);
  });

  it("names the worker and its heartbeat's age, and when lis_managerd would release them", () => {
    assert.equal(
      heldRowsLine({ rows: 10, workers: 1, topWorker: 'web3:4242:9f2c01ab', topHeartbeat: at(30, 14, 54, 48) }, now, 60),
      '10 rows are held by another worker, web3:4242:9f2c01ab (last heartbeat 12s ago): if it is gone, lis_managerd releases them once it has been silent 60s (manager.staleWorkerSeconds).',
    );
  });

  it('says how many workers, the one holding the most, and a worker with no heartbeat recorded', () => {
    assert.equal(
      heldRowsLine({ rows: 1_500, workers: 2, topWorker: 'web3:7:aa', topHeartbeat: null }, now, 90),
      '1,500 rows are held by 2 other workers (the most by web3:7:aa) (no heartbeat recorded): a worker that is gone has its rows released by lis_managerd once it has been silent 90s (manager.staleWorkerSeconds).',
    );
    assert.match(
      heldRowsLine({ rows: 1, workers: 1, topWorker: 'w', topHeartbeat: now }, now, 60)!,
      /^1 row is held by another worker, w \(last heartbeat 0s ago\)/,
    );
  });
});

describe('disabledDatasourcesLine: what a run by hand says of the datasources whose rows are parked', () => {
  it('says nothing when none is disabled; names one, or the first three and how many more', () => {
    assert.equal(disabledDatasourcesLine([], 'uk'), null);
    assert.equal(
      disabledDatasourcesLine([{ datasourceId: 16, reason: null }], 'uk'),
      'Datasource 16 (no reason recorded) of uk is disabled: its rows are parked, not waiting; lis datasource enable uk 16 puts them back.',
    );
    const many = [16, 17, 18, 19, 20].map((id) => ({ datasourceId: id, reason: `reason ${id}` }));
    assert.equal(
      disabledDatasourcesLine(many, 'de'),
      "Datasources 16 (reason 16), 17 (reason 17), 18 (reason 18) and 2 more of de are disabled: their rows are parked, not waiting; lis datasource enable de <datasource> puts one's back (lis datasource show de lists them).",
    );
  });
});
