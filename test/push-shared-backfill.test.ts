import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import pLimit from 'p-limit';
import type { LisConfigInput } from '../src/config/config-schema.ts';
import { parseConfig } from '../src/config/load-config.ts';
import { closeLogger, createLogger } from '../src/log/create-logger.ts';
import { backfillPass } from '../src/push/backfill.ts';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { differingFiles, insertPushRows } from './helpers/push-fixtures.ts';
import { RsyncDaemon } from './helpers/rsync-daemons.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/**
 * Backfill with `stores.shared`: every pushing host can send every row, and each used to send a new frontend all
 * of them. The hosts now split the rows (claims in the push records), and the rows of a host that dies mid-way are
 * sent by another.
 */
describe('lis_pusherd backfill with a shared thumbnail store and several pushing hosts', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let daemon: RsyncDaemon;
  beforeEach(async () => {
    t = await createTestDatabase();
    daemon = await RsyncDaemon.start(path.join(t.dir, 'rsyncd-n1'));
  });
  afterEach(async () => {
    await daemon.stop();
    await t.drop();
  });

  /** One host's configuration: the test's stores, shared. */
  const hostConfig = (host: string, overrides: LisConfigInput = {}): LisConfigInput => ({
    ...overrides,
    host,
    stores: { shared: true, ...overrides.stores },
    queue: { pollSeconds: 0.1, ...overrides.queue },
  });

  /** Live rows of no host, as lis_thumbnaild leaves them with shared stores (store_host ''), before n1 is added. */
  const liveRows = (count: number) => insertPushRows(t.db, { ...t.config, host: '' }, 'uk', count, { stage: 'live' });

  const pushed = async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM frontend_pushes WHERE frontend = 'n1' AND pushed_at IS NOT NULL`.execute(t.db)).rows[0].n;
  const claims = async () => (await sql<{ n: number }>`SELECT count(*)::int AS n FROM frontend_pushes WHERE claimed_by IS NOT NULL`.execute(t.db)).rows[0].n;

  /** One backfill pass of each host (in this process, each with its own configuration), all begun at once. */
  async function passes(hosts: string[], shared = true) {
    const logs = [] as Array<ReturnType<typeof createLogger>>;
    try {
      return await Promise.all(
        hosts.map((host) => {
          const config = parseConfig(JSON.parse(fs.readFileSync(t.writeConfig(hostConfig(host, { stores: { shared } })), 'utf8')), {}, t.dir);
          const log = createLogger({ component: 'pusherd', log: config.log, screen: false, country: 'uk' });
          logs.push(log);
          return backfillPass({ config, db: t.db, log, country: 'uk', chunkSize: 5, limit: pLimit(2), signal: new AbortController().signal });
        }),
      );
    } finally {
      for (const log of logs) await closeLogger(log);
    }
  }

  it('two hosts backfilling a new frontend at once send each row once between them, and it gets every file', async () => {
    const files = await liveRows(40);
    await addFrontend(t.db, 'n1', daemon.url());
    // Two hosts' passes at the same moment, as lis_pusherd on web1 and web2 start theirs when n1 is added.
    const totals = await passes(['web1', 'web2']);
    const sent = totals.map((tt) => tt.n1.pushed);
    // Before the claims: each host sent all 40 it found lacking (80 between them, less only where one host's
    // records of a chunk came before the other's look at it).
    assert.equal(sent[0] + sent[1], 40, `rows sent by web1 and by web2: ${sent.join(', ')}`);
    assert.ok(sent[0] > 0 && sent[1] > 0, `both hosts took a share: ${sent.join(', ')}`);
    assert.deepEqual(
      totals.map((tt) => tt.n1.failed),
      [0, 0],
    );
    assert.equal(await pushed(), 40);
    assert.equal(await claims(), 0, 'no claim left behind');
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, daemon.moduleDir, files), []);
  });

  it('without stores.shared each host still sends the rows whose files it holds, and claims nothing', async () => {
    const web1Files = await insertPushRows(t.db, { ...t.config, host: 'web1' }, 'uk', 10, { stage: 'live', prefix: 'http://img.example.com/web1/' });
    const web2Files = await insertPushRows(t.db, { ...t.config, host: 'web2' }, 'uk', 10, { stage: 'live', prefix: 'http://img.example.com/web2/' });
    await addFrontend(t.db, 'n1', daemon.url());
    const totals = await passes(['web1', 'web2'], false);
    assert.deepEqual(
      totals.map((tt) => [tt.n1.pushed, tt.n1.failed]),
      [
        [10, 0],
        [10, 0],
      ],
      'each host its own ten, as before the claims',
    );
    assert.equal(await claims(), 0);
    assert.deepEqual(differingFiles(t.config.stores.thumbnails, daemon.moduleDir, [...web1Files, ...web2Files]), []);
  });

  it('a host killed mid-backfill: its rows are sent by the other host, whose run by hand waits for them', async () => {
    const files = await liveRows(12);
    await addFrontend(t.db, 'n1', daemon.url());
    const pusherd = (host: string, overrides: LisConfigInput = {}) =>
      spawnTs('bin/lis_pusherd', ['--country', 'uk', '--chunk-size', '4', '--config', t.writeConfig(hostConfig(host, overrides))], {}, undefined, {
        detached: true,
      });
    // web1 at 10 KB/s: its first chunk (four rows, ~220 KB) takes many seconds, so it dies holding it.
    const web1 = pusherd('web1', { push: { bwLimit: '10' } });
    let web2: ReturnType<typeof pusherd> | null = null;
    try {
      await waitFor(async () => (await claims()) === 4 || web1.child.exitCode !== null, 20_000, "web1's first chunk claimed");
      assert.equal(web1.child.exitCode, null, web1.output());
      // A pool of one connection: the pass's claims are held on a session of their own, not one taken from the pool.
      web2 = pusherd('web2', { database: { poolSize: 1 } });
      // web2 sends the other eight, then waits for web1's four instead of ending its run.
      const waiting = new RegExp(`Backfill: n1: 4 rows being sent by lis_pusherd backfill on web1 pid ${web1.child.pid}; watching their claims every 0.1s`);
      await waitFor(() => waiting.test(web2!.output()) || web2!.child.exitCode !== null, 30_000, 'web2 waiting for the rows web1 holds');
      assert.match(web2.output(), /Backfill pass: n1 \+8/, web2.output());
      assert.equal(await pushed(), 8);
      assert.equal(web2.child.exitCode, null, 'web2 still running');

      // web1 dies with its rsync (the OOM killer, a host lost): its session, and its claims, go with it.
      process.kill(-web1.child.pid!, 'SIGKILL');
      const { code } = await web2.exited;
      assert.equal(code, 0, web2.output());
      assert.match(
        web2.output(),
        /Backfill: 4 rows were claimed by passes that ended before they sent them .*: sending them\n[\s\S]*Backfill pass: n1 \+4/,
        web2.output(),
      );
      assert.equal(await pushed(), 12);
      assert.equal(await claims(), 0);
      assert.deepEqual(differingFiles(t.config.stores.thumbnails, daemon.moduleDir, files), []);
      assert.doesNotMatch(web1.output(), /Backfill pass/, 'web1 recorded nothing');
    } finally {
      for (const run of [web1, web2]) if (run && run.child.exitCode === null && run.child.signalCode === null) process.kill(-run.child.pid!, 'SIGKILL');
      await Promise.all([web1.exited, web2?.exited]);
    }
  });
});
