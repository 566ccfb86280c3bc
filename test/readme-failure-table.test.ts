import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FAILURE_REASONS, ownedByStageErrorRate, type FailureReason } from '../src/failure/failure-reasons.ts';
import { ROOT } from './helpers/processes.ts';

/** The rows of README's failure table ("Whose fault"): class, owner, retried?, alert, meaning. */
function readmeFailureRows(): Map<string, { owner: string; retried: string; alert: string; meaning: string }> {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('| `last_error_class` | owner | retried? | alert | meaning |');
  assert.ok(start >= 0, 'the failure table is in README.md');
  const rows = new Map<string, { owner: string; retried: string; alert: string; meaning: string }>();
  for (const line of readme.slice(start).split('\n').slice(2)) {
    if (!line.startsWith('|')) break;
    const [cls, owner, retried, alert, meaning] = line
      .slice(1, -1)
      .split(' | ')
      .map((c) => c.trim());
    rows.set(cls.replace(/`/g, ''), { owner, retried, alert, meaning });
  }
  return rows;
}

const RETRIED: Record<FailureReason['retry'], RegExp> = {
  never: /^no: failed at once$/,
  backoff: /^yes, backoff; failed after `queue\.maxAttempts`$/,
  when_fixed: /^yes, uncharged, once fixed$/,
};

describe("README's failure table", () => {
  it('is src/failure/failure-reasons.ts: every class, its owner, whether it is retried and its meaning', () => {
    const rows = readmeFailureRows();
    assert.deepEqual([...rows.keys()].sort(), Object.keys(FAILURE_REASONS).sort());
    for (const [cls, reason] of Object.entries(FAILURE_REASONS) as Array<[string, FailureReason]>) {
      const row = rows.get(cls)!;
      assert.equal(row.owner, reason.owner, cls);
      assert.match(row.retried, RETRIED[reason.retry], cls);
      assert.equal(row.meaning, reason.meaning, cls);
      // A source fault counts toward its datasource's failure rate (bad_datasources), so that is its alert.
      if (reason.owner === 'source') assert.equal(row.alert, 'datasource disabled (by rate)', cls);
      // Ours: the stage's error rate (worker_minutes.ours) for those no alert of their own covers.
      else assert.equal(row.alert === 'stage error rate', ownedByStageErrorRate(cls), `${cls}: ${row.alert}`);
    }
  });
});
