import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { embeddedServerSettings, machineMemory } from '../src/db/embedded-server.ts';
import { spawnTs } from './helpers/processes.ts';
import { freePort } from './helpers/free-port.ts';
import { createTestDatabase } from './helpers/test-database.ts';

describe('the embedded PostgreSQL', () => {
  it('sizes shared_buffers from the machine: a quarter of its memory, 128 MB to 2 GB', async () => {
    const GB = 1024 ** 3;
    assert.equal(embeddedServerSettings(0.25 * GB).shared_buffers, '128MB');
    assert.equal(embeddedServerSettings(2 * GB).shared_buffers, '512MB');
    assert.equal(embeddedServerSettings(24 * GB).shared_buffers, '2048MB');
    assert.equal(embeddedServerSettings(4 * GB).max_wal_size, '4GB');
    if (process.env.LIS_DATABASE_URL) return; // a server of the operator's, with its own settings
    // The server the tests run on is the embedded one, started with these settings.
    const t = await createTestDatabase();
    try {
      // pg_settings gives shared_buffers in 8 kB blocks, whatever unit it was set in.
      const { rows } = await sql<{ mb: number }>`SELECT setting::int * 8 / 1024 AS mb FROM pg_settings WHERE name = 'shared_buffers'`.execute(t.db);
      assert.equal(
        `${rows[0].mb}MB`,
        embeddedServerSettings(machineMemory()).shared_buffers,
        'a server started by an older version keeps its settings until `npx lis db stop; npx lis db start`',
      );
    } finally {
      await t.drop();
    }
  });

  it('reports a data folder it has not initialised, and starts in a private (0700) folder', async function () {
    this.timeout(90_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-'));
    try {
      const config = path.join(dir, 'config.json');
      // A private folder (mode 700) around the data folder, as a checkout under /root would be.
      const privateDir = path.join(dir, 'private');
      fs.mkdirSync(privateDir, { mode: 0o700 });
      fs.chmodSync(privateDir, 0o700);
      fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir: path.join(privateDir, 'var', 'pg'), port: await freePort() } } }));
      const status = spawnTs('bin/lis', ['--config', config, 'db', 'status'], { LIS_DATABASE_URL: '' });
      assert.equal((await status.exited).code, 3);
      assert.match(status.output(), /embedded PostgreSQL: not initialised; data .*private\/var\/pg/);
      const start = spawnTs('bin/lis', ['--config', config, 'db', 'start'], { LIS_DATABASE_URL: '' });
      // As root the server runs as `postgres`, and the private folder is opened to it for passing through
      // (an ACL entry); as anyone else it runs as that user, who owns the folder. It starts either way.
      assert.equal((await start.exited).code, 0, start.output());
      assert.equal((await spawnTs('bin/lis', ['--config', config, 'db', 'stop'], { LIS_DATABASE_URL: '' }).exited).code, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
