import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assertStoreMounted, checkStore, STORE_MARKER } from '../src/daemon/store-check.ts';
import { storeIdentity } from '../src/daemon/store-identity.ts';

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

describe('store check: probes whose pid is alive but not their writer', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-store-check-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("sweeps a probe unchanged for an hour, even named for this process's pid (a container's pid 1) or another live one", async () => {
    // In a container every daemon is pid 1: a killed check's probe names the pid of the next one, which never swept
    // it (its own pid), and of every other, for which that pid is alive.
    const hoursAgo = new Date(Date.now() - 2 * 3600_000);
    const own = `.lis-probe.tmp-${process.pid}-0badf00d`;
    const other = `.lis-probe.tmp-1-0badf00d`;
    const fresh = `.lis-probe.tmp-${process.pid}-0000f00d`;
    for (const name of [own, other, fresh]) fs.writeFileSync(path.join(dir, name), '');
    for (const name of [own, other]) fs.utimesSync(path.join(dir, name), hoursAgo, hoursAgo);
    const health = await checkStore(dir, { minFreeBytes: 0, minFreePercent: 0 });
    assert.equal(health.ok, true, health.reason ?? '');
    assert.deepEqual(fs.readdirSync(dir), [fresh], 'the old ones swept, the fresh one (maybe a check in progress) kept');
  });
});

describe('store check: a writer about to make folders (assertStoreMounted)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-store-mounted-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses an empty, unmarked store while rows have files there, and marks a new one', async () => {
    await assert.rejects(
      assertStoreMounted(dir, () => Promise.resolve(true)),
      (error: NodeJS.ErrnoException) => error.code === 'ERR_STORE_UNMARKED' && /is its disk mounted\?/.test(error.message),
    );
    assert.deepEqual(fs.readdirSync(dir), []);
    await assertStoreMounted(dir, () => Promise.resolve(false));
    assert.deepEqual(fs.readdirSync(dir), [STORE_MARKER]);
  });

  it('is not refused for a row another writer finished while the database was asked: that writer marked the store first', async () => {
    // Two of lis_imaged's generations: both found the store new; the other marked it and recorded its row past
    // thumbnailing before this one's question (any row past thumbnailing?) was answered.
    const otherWriterDone = () => {
      fs.writeFileSync(path.join(dir, STORE_MARKER), 'marked by the other writer\n');
      return Promise.resolve(true);
    };
    await assertStoreMounted(dir, otherWriterDone);
  });
});

describe('store check: a new store marked by many processes at once', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-store-mark-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is marked once, whole: every writer that finds it new reads the one identity it keeps, never an empty marker', async () => {
    // Daemons of one host starting together on a new store each find it unmarked and mark it. Each then registers
    // the store's identity (a digest of the marker), and a worker of this host whose identity differs is taken for
    // another machine under this host's name. The writers' answers to "rows here?" come back spread over some
    // milliseconds (the marker's text carries the time), and each reads the identity as soon as its check is done.
    const writers = Array.from({ length: 40 }, async (_, i) => {
      await assertStoreMounted(dir, () => new Promise((resolve) => setTimeout(() => resolve(false), i % 8)));
      return storeIdentity(dir);
    });
    const identities = new Set(await Promise.all(writers));
    const final = await storeIdentity(dir);
    assert.notEqual(final, null);
    assert.notEqual(final, crypto.createHash('sha256').update('').digest('hex').slice(0, 16), 'the marker has its text');
    assert.deepEqual([...identities], [final], 'every writer read the identity the store keeps');
    assert.deepEqual(fs.readdirSync(dir), [STORE_MARKER], 'no temp file left');
  });
});
