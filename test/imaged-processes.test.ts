import assert from 'node:assert/strict';
import fs from 'node:fs';
import { sql } from 'kysely';
import pg from 'pg';
import path from 'node:path';
import { addFrontend } from '../src/push/frontend-registry.ts';
import { TEST_DOWNLOAD } from './helpers/download-test-config.ts';
import { OriginServer, photoJpeg, startImaged, startNginx } from './helpers/imaged-fixtures.ts';
import { insertLiveRow, insertQueuedRow, rawGet } from './helpers/imaged-in-process.ts';
import { startDatabaseProxy } from './helpers/database-proxy.ts';
import { spawnTs, waitFor } from './helpers/processes.ts';
import { serverUpFor } from './helpers/server-uptime.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

/** The service's grace: `servicectl stop` (services.stopTimeoutSeconds) and systemd (TimeoutStopSec) kill after 60 s. */
const STOP_GRACE_MS = 60_000;

const PRESETS = {
  small: { width: 120, height: 90, mode: 'crop' as const },
  medium: { width: 320, height: 240, mode: 'pad' as const },
};

describe('lis_imaged as processes: two at once, and behind a real nginx', function () {
  this.timeout(180_000);
  let t: TestDatabase;
  let origin: OriginServer;
  let original: Buffer;
  const closers: Array<() => Promise<void>> = [];

  before(async () => {
    original = await photoJpeg(900, 600);
  });
  beforeEach(async () => {
    origin = await OriginServer.start(new Map([['/photo.jpg', original]]));
    closers.push(() => origin.close());
    t = await createTestDatabase({ overrides: { download: TEST_DOWNLOAD, thumbnail: { presets: PRESETS } } });
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
    await t.drop();
  });

  it('stopped (SIGTERM) while its database hangs, with a generation in hand and one waiting to start, it exits within its grace', async () => {
    const proxy = await startDatabaseProxy(t.url);
    closers.push(() => proxy.cut());
    // Connects bounded at 2 s (database.connectTimeoutSeconds), not 10: the stop waits one out, as it would the configured
    // one; a stop's wait on one database call (database.stopWaitSeconds) 0.5 s, not 5.
    const imaged = await startImaged(
      t.writeConfig({ imaged: { maxGenerations: 1 }, database: { ...t.config.database, connectTimeoutSeconds: 2, stopWaitSeconds: 0.5 } }),
      {
        LIS_DATABASE_URL: proxy.url,
      },
    );
    closers.push(imaged.stop);
    // Two live rows whose originals are lost: each generation, holding its image's lock, fetches it again from the
    // origin, which holds the first; the second request has read its row and waits for the one generation slot.
    const [first, second] = [
      await insertLiveRow(t.db, t.config, origin.url('/photo.jpg?first'), null),
      await insertLiveRow(t.db, t.config, origin.url('/photo.jpg?second'), null),
    ];
    origin.held.add('/photo.jpg');
    const arrived = origin.arrival('/photo.jpg');
    const requests = [first, second].map((row) => rawGet(imaged.url, row.pathOf('medium')).catch((error: unknown) => error));
    await arrived;
    await waitFor(
      async () => /^lis_imaged_requests_waiting\S* 1$/m.test((await rawGet(imaged.url, '/metrics')).body.toString()),
      10_000,
      'the second request to wait',
    );
    // Every connection it has is cut, and every new one is accepted and never answered: the second generation,
    // once the first has failed, connects for its lock's transaction into that.
    proxy.hang();
    const signalled = Date.now();
    imaged.run.child.kill('SIGTERM');
    const exit = await Promise.race([imaged.run.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), STOP_GRACE_MS).unref())]);
    const took = `${Math.round((Date.now() - signalled) / 100) / 10} s after SIGTERM`;
    assert.ok(exit, `still running ${took}:\n${imaged.run.output()}`);
    assert.equal(exit.code, 0, imaged.run.output());
    assert.match(
      imaged.run.output(),
      /medium\.jpg: the database cannot be reached: .* is not answering: no answer to a connect/,
      'the second generation met the hang',
    );
    origin.release();
    await Promise.all(requests);
  });

  it('stopped (SIGTERM) while a row is owed back and the database keeps its connections without answering, it exits within its grace', async () => {
    const proxy = await startDatabaseProxy(t.url);
    closers.push(() => proxy.cut());
    // A stop's wait on one database call (database.stopWaitSeconds) 0.5 s, not 5: the test waits it out.
    const imaged = await startImaged(t.writeConfig({ database: { ...t.config.database, stopWaitSeconds: 0.5 } }), { LIS_DATABASE_URL: proxy.url });
    closers.push(imaged.stop);
    // A queued row claimed and its download under way when the database goes: it cannot be given back, and is owed.
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    origin.held.add('/photo.jpg');
    const arrived = origin.arrival('/photo.jpg');
    const request = rawGet(imaged.url, row.pathOf('small')).catch((error: unknown) => error);
    await arrived;
    await proxy.cut();
    origin.release();
    await request;
    await waitFor(() => /Could not give back row/.test(imaged.run.output()), 20_000, 'the row owed back');
    // Back, but answering nothing on live_images (a server frozen on I/O): the retries wait on the table.
    const session = new pg.Client({ connectionString: t.url });
    await session.connect();
    closers.push(() => session.end().catch(() => {}));
    await session.query('BEGIN');
    await session.query('LOCK TABLE live_images IN ACCESS EXCLUSIVE MODE');
    await proxy.restore();
    // (From another connection: within the locking session's transaction, pg_stat_activity stays as it first read it.)
    await waitFor(
      async () => {
        const { rows } = await sql<{ n: string }>`
          SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(t.db);
        return Number(rows[0].n) > 0;
      },
      20_000,
      'a retry waiting on the table',
    );
    const signalled = Date.now();
    imaged.run.child.kill('SIGTERM');
    const exit = await Promise.race([imaged.run.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), STOP_GRACE_MS).unref())]);
    assert.ok(exit, `still running ${Math.round((Date.now() - signalled) / 1000)} s after SIGTERM:\n${imaged.run.output()}`);
    assert.equal(exit.code, 0, imaged.run.output());
    await session.query('ROLLBACK');
  });

  it('50 concurrent requests for one missing thumbnail, split over two lis_imaged processes, cause one generation and get the same bytes', async () => {
    const config = t.writeConfig();
    const [a, b] = await Promise.all([startImaged(config, { LIS_DATABASE_URL: t.url }), startImaged(config, { LIS_DATABASE_URL: t.url })]);
    closers.push(a.stop, b.stop);
    const row = await insertQueuedRow(t.db, origin.url('/photo.jpg'));
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => rawGet(i % 2 ? a.url : b.url, row.pathOf('small'))));
    for (const answer of answers) {
      assert.equal(answer.status, 200, answer.body.toString());
      assert.deepEqual(answer.body, answers[0].body);
    }
    assert.equal(origin.hits.get('/photo.jpg'), 1, 'the original was fetched once');
    const made = () => [a, b].map((p) => (p.run.output().match(/made by working the queued row's stages/g) ?? []).length);
    // The line reaches us through the child's stderr pipe, which is read apart from the answers' sockets: waited for.
    await waitFor(() => made()[0] + made()[1] > 0, 20_000, 'the generation said');
    assert.equal(made()[0] + made()[1], 1, `one generation in all: ${made().join(' + ')}`);
    const after = await t.db.selectFrom('live_images').select(['stage', 'state', 'locked_by']).where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.deepEqual([after.stage, after.state, after.locked_by], ['push', 'waiting', null]);
  });

  it("SIGKILL of lis_imaged while it downloads a new origin key: once the row is released and a lis_downloadd finds no key, lis_managerd's missed_origin_rows deletes it", async () => {
    const config = t.writeConfig({
      imaged: { origins: { web: { country: 'uk', datasourceId: 3, sources: [{ type: 'http', baseUrl: origin.url('/') }] } } },
      queue: { heartbeatSeconds: 0.5 },
      manager: { staleWorkerSeconds: 5 },
    });
    const env = { LIS_DATABASE_URL: t.url };
    const imaged = await startImaged(config, env);
    closers.push(imaged.stop);
    const url = origin.url('/gone.jpg');
    origin.held.add('/gone.jpg');
    const arrived = origin.arrival('/gone.jpg');
    const request = rawGet(imaged.url, '/web/small/gone.jpg').catch((error: Error) => error);
    await arrived;
    const row = () =>
      t.db.selectFrom('live_images').select(['stage', 'state', 'locked_by', 'last_error_class']).where('image_url', '=', url).executeTakeFirst();
    const held = await row();
    assert.ok(held?.locked_by?.startsWith(`testhost:${imaged.run.child.pid}:`), `lis_imaged holds its new row, downloading it: ${JSON.stringify(held)}`);
    imaged.run.child.kill('SIGKILL');
    await imaged.run.exited;
    assert.ok((await request) instanceof Error, 'the request died with the process');
    origin.release();

    // stuck_jobs gives the dead process's row back (silence counts from the server's start at the earliest).
    await serverUpFor(t.db, 5);
    await waitFor(
      async () => {
        const run = spawnTs('bin/lis_managerd', ['--check', 'stuck_jobs', '--config', config]);
        assert.equal((await run.exited).code, 0, run.output());
        return (await row())?.locked_by === null;
      },
      60_000,
      'stuck_jobs to release the row',
    );
    const download = spawnTs('bin/lis_downloadd', ['--country', 'uk', '--config', config, '--noproxy']);
    assert.equal((await download.exited).code, 0, download.output());
    assert.deepEqual(await row(), { stage: 'download', state: 'failed', locked_by: null, last_error_class: 'http_404' });

    const check = spawnTs('bin/lis_managerd', ['--check', 'missed_origin_rows', '--config', config]);
    assert.equal((await check.exited).code, 0, check.output());
    assert.equal(await row(), undefined, 'the missed row is gone');
  });

  it('through nginx: a missing thumbnail comes back made and is queued for pushing; after a lis_pusherd run nginx serves it from disk without lis_imaged', async () => {
    const frontendRoot = path.join(t.dir, 'frontend-root');
    fs.mkdirSync(frontendRoot, { recursive: true });
    await addFrontend(t.db, 'local', frontendRoot);
    const config = t.writeConfig();
    const imaged = await startImaged(config, { LIS_DATABASE_URL: t.url });
    closers.push(imaged.stop);
    const nginx = await startNginx(path.join(t.dir, 'nginx'), frontendRoot, Number(new URL(imaged.url).port));
    closers.push(nginx.stop);
    // Live since before `medium` existed: only `small` is on the frontend.
    const row = await insertLiveRow(t.db, t.config, origin.url('/photo.jpg'), original, ['small']);

    const first = await rawGet(nginx.url, row.pathOf('medium'));
    assert.equal(first.status, 200, first.body.toString());
    assert.equal(first.headers['x-imaged'], 'made');
    assert.equal(first.headers['content-type'], 'image/jpeg');
    assert.equal(fs.existsSync(path.join(frontendRoot, row.pathOf('medium'))), false, 'not on the frontend yet');
    // Queued for pushing: the row's files changed, so the pusher's backfill sends them to every frontend.
    const data = await t.db.selectFrom('live_images').select('image_data').where('id', '=', row.id).executeTakeFirstOrThrow();
    assert.ok((data.image_data as { presets: Record<string, unknown> }).presets.medium);
    assert.equal((await rawGet(nginx.url, '/uk/../../etc/passwd')).status, 400);
    assert.equal((await rawGet(nginx.url, '/nosuch/small/a.jpg')).status, 404);
    assert.equal((await rawGet(nginx.url, '/metrics')).status, 404, "lis_imaged's metrics are not public");
    assert.equal((await rawGet(imaged.url, '/metrics')).status, 200);

    const push = spawnTs('bin/lis_pusherd', ['--country', 'uk', '--config', config], { LIS_DATABASE_URL: t.url });
    const { code } = await push.exited;
    assert.equal(code, 0, push.output());
    assert.deepEqual(fs.readFileSync(path.join(frontendRoot, row.pathOf('medium'))), first.body);

    await imaged.stop();
    const hit = await rawGet(nginx.url, row.pathOf('medium'));
    assert.equal(hit.status, 200);
    assert.equal(hit.headers['x-imaged'], undefined, 'served by nginx from disk');
    assert.deepEqual(hit.body, first.body);
    // rsync keeps the mtime, and lis_imaged writes nginx's ETag form: the validators agree.
    assert.equal(hit.headers.etag, first.headers.etag);
    assert.equal((await rawGet(nginx.url, row.pathOf('medium'), { headers: { 'if-none-match': first.headers.etag } })).status, 304);
  });
});
