import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnTs } from './helpers/processes.ts';

/** Every line of a base name's files, rotated ones included (`downloadd.uk-2026-11-29.log`, `...log.1`, ...). */
function linesOf(dir: string, prefix: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && !fs.lstatSync(path.join(dir, f)).isSymbolicLink())
    .flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean));
}

describe('log files', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-logs-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("two countries' daemons log and rotate at once, each in files of its own, losing no line, readable by owner and group only", async function () {
    this.timeout(60_000);
    const count = 600;
    const writers = ['uk', 'de'].map((country) => spawnTs('test/helpers/log-writer.ts', [dir, country, String(count)]));
    for (const w of writers) assert.equal((await w.exited).code, 0, w.output());
    for (const [country, other] of [
      ['uk', 'de'],
      ['de', 'uk'],
    ]) {
      const all = linesOf(dir, `downloadd.${country}-`);
      const numbers = all.map((l) => Number(new RegExp(`${country} line (\\d+) `).exec(l)?.[1] ?? -1)).filter((n) => n >= 0);
      assert.deepEqual(
        [...numbers].sort((a, b) => a - b),
        Array.from({ length: count }, (_, i) => i),
        `${country}: every line once`,
      );
      assert.ok(
        all.every((l) => !l.includes(`${other} line`)),
        `${country}'s files hold no ${other} line`,
      );
      // 1k files: the 600 lines (~60 kB) were rotated many times.
      assert.ok(fs.readdirSync(dir).filter((f) => f.startsWith(`downloadd.${country}-`)).length > 20);
      const errors = linesOf(dir, `downloadd.${country}.error-`);
      assert.equal(errors.filter((l) => l.includes(`${country} error`)).length, count / 10);
      // Its owner's and group's only, rotated files too (a line may name a signed URL).
      for (const f of fs.readdirSync(dir).filter((f) => f.startsWith(`downloadd.${country}`) && !fs.lstatSync(path.join(dir, f)).isSymbolicLink()))
        assert.equal(fs.statSync(path.join(dir, f)).mode & 0o027, 0, `${f}: no group write, nothing for others`);
      // The plain names follow the current files.
      assert.ok(fs.lstatSync(path.join(dir, `downloadd.${country}.log`)).isSymbolicLink());
      assert.ok(fs.lstatSync(path.join(dir, `downloadd.${country}.error.log`)).isSymbolicLink());
    }
  });
});
