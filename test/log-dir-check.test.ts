import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnTs } from './helpers/processes.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

// A log folder the daemon cannot write (a systemd unit's User= on a folder root made, a file in the way) is named
// with its config key and the user, and the daemon exits 1: no stack trace, no unhandled 'error' event.
describe('a log.dir the daemons cannot write', () => {
  let t: TestDatabase;
  beforeEach(async () => (t = await createTestDatabase()));
  afterEach(async () => t.drop());

  it('stops each executable at start with a message naming log.dir and the user', async function () {
    this.timeout(60_000);
    const file = path.join(t.dir, 'a-file');
    fs.writeFileSync(file, '');
    const dir = path.join(file, 'log');
    const config = t.writeConfig({ log: { dir } });
    const runs = await Promise.all(
      [
        ['bin/lis_managerd', '--service'],
        ['bin/lis_downloadd', '--country', 'uk', '--service'],
        ['bin/lis_imaged', '--service'],
      ].map(async ([bin, ...args]) => {
        const run = spawnTs(bin, [...args, '--config', config]);
        return { bin, code: (await run.exited).code, text: run.output() };
      }),
    );
    for (const run of runs) {
      assert.equal(run.code, 1, `${run.bin}: ${run.text}`);
      assert.match(
        run.text,
        new RegExp(
          `^error: cannot write ${dir} \\(log\\.dir\\) as user \\S+: ENOTDIR: not a directory, mkdir '${dir}'; make it writable by that user, or set log\\.dir\\n$`,
        ),
        run.bin,
      );
    }
  });
});
