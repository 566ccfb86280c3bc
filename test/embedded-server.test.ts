import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnTs } from './helpers/processes.ts';

describe('the embedded PostgreSQL', () => {
  it('reports a data folder it has not initialised, and one the server user cannot reach, plainly', async function () {
    this.timeout(30_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-'));
    try {
      const config = path.join(dir, 'config.json');
      // A private folder (mode 700) around the data folder, as a checkout under /root would be.
      const privateDir = path.join(dir, 'private');
      fs.mkdirSync(privateDir, { mode: 0o700 });
      fs.chmodSync(privateDir, 0o700);
      fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir: path.join(privateDir, 'var', 'pg'), port: 54399 } } }));
      const status = spawnTs('bin/lis', ['--config', config, 'db', 'status']);
      assert.equal((await status.exited).code, 3);
      assert.match(status.output(), /embedded PostgreSQL: not initialised; data .*private\/var\/pg/);
      const start = spawnTs('bin/lis', ['--config', config, 'db', 'start']);
      const { code } = await start.exited;
      if (process.getuid?.() === 0) {
        // As root the server runs as `postgres`, which cannot get into the private folder.
        assert.equal(code, 1, start.output());
        assert.match(start.output(), /runs as the "postgres" user \(it refuses root\), which cannot reach the data folder at .*private\/var: make the folders above it traversable/);
      } else {
        // As anyone else the server runs as that user, who owns the folder: it starts.
        assert.equal(code, 0, start.output());
        assert.equal((await spawnTs('bin/lis', ['--config', config, 'db', 'stop']).exited).code, 0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
