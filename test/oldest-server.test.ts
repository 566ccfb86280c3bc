import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADMIN, ExternalPostgres, TEST_CERT } from './helpers/external-postgres.ts';
import { spawnTs } from './helpers/processes.ts';

/**
 * The README says PostgreSQL 13 or newer; the suite runs on the embedded server (18). This runs the whole system
 * once on 13 (the `postgres13` package's programs, a server of the test's own): every migration, each daemon's
 * claims and finishes, the pushes, the manager's and the status's queries.
 */
describe('PostgreSQL 13, the oldest server ImageSys runs on', function () {
  this.timeout(240_000);
  let server: ExternalPostgres;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-pg13-'));
  before(async () => {
    server = await ExternalPostgres.start({ binaries: await import('postgres13') });
  });
  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('lis demo runs the whole system on it: photos live on three frontends, the bad URLs failed with their reasons; lis db status names it', async () => {
    const url = (database: string) => server.url(ADMIN.user, ADMIN.password, database, `sslmode=verify-full&sslrootcert=${TEST_CERT}`);
    const demo = spawnTs('bin/lis', ['demo', '--photos', '12', '--dir', path.join(dir, 'demo'), '--database', 'lis_demo'], {
      LIS_DATABASE_URL: url('postgres'),
    });
    const { code } = await demo.exited;
    assert.equal(code, 0, demo.output());
    assert.match(demo.output(), /Live: 12 of 12 photos, on n1 \(36 files\), n2 \(36\), n3 \(36\)/);
    for (const reason of ['refused_address', 'not_image', 'http_410', 'http_404', 'truncated']) assert.match(demo.output(), new RegExp(`^  ${reason}\\s`, 'm'));
    const status = spawnTs('bin/lis', ['db', 'status'], { LIS_DATABASE_URL: url('lis_demo') });
    assert.equal((await status.exited).code, 0, status.output());
    assert.match(status.output(), /^server: PostgreSQL 13\.\d+, read-write, a server session per connection \(ImageSys runs on it\)$/m);
    assert.match(status.output(), /^schema: current$/m);
  });
});
