import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkStore } from '../src/daemon/store-check.ts';

describe('store check: probes left behind', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-store-check-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sweeps the probe of a writer that is gone, keeps those of live ones, and leaves none of its own', async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'close'); // reaped: its pid names no process now
    const alive = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const probe = (pid: number) => `.lis-probe.tmp-${pid}-0badf00d`;
      for (const pid of [gone.pid!, alive.pid!]) fs.writeFileSync(path.join(dir, probe(pid)), '');
      const health = await checkStore(dir, { minFreeBytes: 0, minFreePercent: 0 });
      assert.equal(health.ok, true, health.reason ?? '');
      assert.deepEqual(fs.readdirSync(dir), [probe(alive.pid!)], "the dead writer's probe swept, the live one's kept, ours removed");
    } finally {
      const closed = once(alive, 'close');
      alive.kill('SIGKILL');
      await closed;
    }
  });
});
