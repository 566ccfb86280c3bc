// One door for the queue: no module outside src/queue writes live_images or claimable_rows.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/processes.ts';
import { sourceFiles } from './helpers/source-files.ts';

const WRITE = [
  /\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(ONLY\s+)?(live_images|claimable_rows)\b/gi,
  /\b(updateTable|insertInto|deleteFrom|replaceInto|mergeInto)\(\s*['"`](live_images|claimable_rows)\b/g,
  /\bMERGE\s+INTO\s+(live_images|claimable_rows)\b/gi,
];

/** Every write to the queue tables in `text`, as `file:line: statement`. */
export function queueWrites(file: string, text: string): string[] {
  const found: string[] = [];
  for (const pattern of WRITE) {
    for (const m of text.matchAll(pattern)) {
      const statement = text.slice(m.index, m.index + 80).replace(/\s+/g, ' ');
      found.push(`${file}:${text.slice(0, m.index).split('\n').length}: ${statement}`);
    }
  }
  return found;
}

describe('one door for the queue', () => {
  it('no module outside src/queue writes live_images or claimable_rows, the intake and the Interface included', () => {
    const offenders = sourceFiles(path.join(ROOT, 'src'))
      .map((f) => path.relative(ROOT, f).split(path.sep).join('/'))
      .filter((f) => !f.startsWith('src/queue/'))
      .flatMap((f) => queueWrites(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));
    assert.deepEqual(offenders, [], 'write through an operation in src/queue instead');
  });

  it('the scan finds a write in every form it can take', () => {
    const planted = [
      "await sql`UPDATE live_images SET state = 'parked'`",
      'await sql`\n  update  live_images set x = 1`',
      'await sql`DELETE FROM claimable_rows WHERE id = 1`',
      'await sql`INSERT INTO claimable_rows (id) VALUES (1)`',
      "await db.updateTable('live_images').set({ state: 'waiting' })",
      'await trx.deleteFrom("claimable_rows").execute()',
      "await db.insertInto('live_images').values(row)",
    ];
    for (const line of planted) assert.equal(queueWrites('src/manager/x.ts', line).length, 1, line);
    // Queueing a URL is a queue operation (src/queue/enqueue-rows.ts): neither the intake nor the Interface may insert.
    assert.equal(queueWrites('src/intake/store-batch.ts', 'sql`INSERT INTO live_images AS li (country) VALUES (1)`').length, 1, 'the intake may not insert');
    assert.equal(queueWrites('src/interface/image-sys.ts', 'sql`\n  INSERT INTO live_images AS li (country) VALUES (1)`').length, 1, 'nor the Interface');
    assert.equal(queueWrites('src/intake/enqueue-urls.ts', 'sql`UPDATE live_images SET state = 1`').length, 1, 'nor update');
    assert.equal(queueWrites('src/manager/x.ts', "db.selectFrom('live_images')").length, 0, 'reads are fine');
  });
});
