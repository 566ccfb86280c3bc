import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { databaseUrl, dropDatabase } from '../src/db/connect.ts';
import { spawnTs } from './helpers/processes.ts';
import { baseTestConfig } from './helpers/test-database.ts';

describe('lis demo', () => {
  const database = `lis_test_demo_${crypto.randomBytes(4).toString('hex')}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-demo-'));
  after(async () => {
    await dropDatabase(await databaseUrl(baseTestConfig()), database);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs the whole system: photos go live on three frontends, the bad URLs fail with their reasons', async function () {
    this.timeout(180_000);
    const run = spawnTs('bin/lis', ['demo', '--photos', '12', '--dir', dir, '--database', database]);
    const { code } = await run.exited;
    const out = run.output();
    assert.equal(code, 0, out);
    assert.match(out, /Live: 12 of 12 photos, on n1 \(36 files\), n2 \(36\), n3 \(36\)/);
    for (const reason of ['refused_address', 'not_image', 'http_410', 'http_404', 'truncated']) assert.match(out, new RegExp(`^  ${reason}\\s`, 'm'));
    assert.match(out, /Stage times: download [\d.]+s, thumbnail [\d.]+s, push [\d.]+s/);
    // Byte-identical on every frontend.
    const n1 = path.join(dir, 'frontends', 'n1');
    const walk = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
    for (const file of walk(n1)) {
      const rel = path.relative(n1, file);
      for (const other of ['n2', 'n3']) assert.ok(fs.readFileSync(file).equals(fs.readFileSync(path.join(dir, 'frontends', other, rel))), rel);
    }
  });
});
