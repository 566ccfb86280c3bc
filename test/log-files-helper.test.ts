import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readLog, readLogIfAny } from './helpers/log-files.ts';

describe('test helper readLog: a daemon log over a run that crossed midnight', () => {
  let dir = '';
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'read-log-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reads every dated file of the name, oldest first, not only today's that the link names", () => {
    const write = (name: string, text: string) => fs.writeFileSync(path.join(dir, name), text);
    write('testd.uk-2026-11-30.log', 'before midnight\n');
    write('testd.uk-2026-12-01.log', 'after midnight\n');
    write('testd.uk-2026-12-01.log.1', 'rotated by size\n');
    write('testd.uk.error-2026-11-30.log', 'an error\n');
    write('testd.de-2026-11-30.log', 'another country\n');
    fs.symlinkSync('testd.uk-2026-12-01.log', path.join(dir, 'testd.uk.log'));
    fs.symlinkSync('testd.uk.error-2026-11-30.log', path.join(dir, 'testd.uk.error.log'));
    assert.equal(readLog(path.join(dir, 'testd.uk.log')), 'before midnight\nafter midnight\nrotated by size\n');
    assert.equal(readLog(path.join(dir, 'testd.uk.error.log')), 'an error\n');
    write('pusherd.uk.out', 'a supervisor says\n');
    assert.equal(readLog(path.join(dir, 'pusherd.uk.out')), 'a supervisor says\n');
    assert.equal(readLogIfAny(path.join(dir, 'none.log')), '');
    assert.throws(() => readLog(path.join(dir, 'none.log')), { code: 'ENOENT' });
  });
});
