// One door for the queue: no module outside src/queue writes live_images or claimable_rows.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/processes.ts';

/**
 * The writes the queue allows elsewhere: the intake's INSERT (the ETL, and the
 * Interface's enqueue for listing code), whose ON CONFLICT DO UPDATE sets
 * last_seen only (not a queue column); the insert triggers list and park new rows.
 */
const ALLOWED: Array<{ file: string; statement: RegExp }> = [
  { file: 'src/intake/upsert-urls.ts', statement: /^INSERT INTO live_images\b/i },
  { file: 'src/interface/image-sys.ts', statement: /^INSERT INTO live_images\b/i },
];

const WRITE = [
  /\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(ONLY\s+)?(live_images|claimable_rows)\b/gi,
  /\b(updateTable|insertInto|deleteFrom|replaceInto|mergeInto)\(\s*['"`](live_images|claimable_rows)\b/g,
  /\bMERGE\s+INTO\s+(live_images|claimable_rows)\b/gi,
];

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return /\.(ts|mts|js|mjs|sql)$/.test(e.name) ? [full] : [];
  });
}

/** Every write to the queue tables in `text`, as `file:line: statement`. */
export function queueWrites(file: string, text: string): string[] {
  const found: string[] = [];
  for (const pattern of WRITE) {
    for (const m of text.matchAll(pattern)) {
      const statement = text.slice(m.index, m.index + 80).replace(/\s+/g, ' ');
      if (ALLOWED.some((a) => a.file === file && a.statement.test(statement))) continue;
      found.push(`${file}:${text.slice(0, m.index).split('\n').length}: ${statement}`);
    }
  }
  return found;
}

describe('one door for the queue', () => {
  it("no module outside src/queue writes live_images or claimable_rows (the intake's INSERT excepted)", () => {
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
    assert.equal(queueWrites('src/intake/upsert-urls.ts', 'sql`INSERT INTO live_images AS li (country) VALUES (1)`').length, 0, 'the intake may insert');
    assert.equal(queueWrites('src/intake/enqueue-urls.ts', 'sql`UPDATE live_images SET state = 1`').length, 1, 'but not update');
    assert.equal(queueWrites('src/manager/x.ts', "db.selectFrom('live_images')").length, 0, 'reads are fine');
  });
});
