import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { databaseUrl } from '../src/db/connect.ts';
import { dropDatabase } from '../src/db/recreate-database.ts';
import { FRONTEND_MARKER } from '../src/push/frontend-root-check.ts';
import { ROOT, spawnTs } from './helpers/processes.ts';
import { baseTestConfig } from './helpers/test-database.ts';
import { freePort } from './helpers/free-port.ts';
import { lookAroundLines } from '../src/demo/run-demo.ts';

/** `lis demo` in `cwd` with `env` (and no LIS_DATABASE_URL of the test run's); its exit code and output. */
function demoIn(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/lis'), 'demo', '--dir', path.join(cwd, 'demo'), ...args], {
      cwd,
      env: { ...process.env, LIS_DATABASE_URL: undefined, LIS_CONFIG: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('lis demo', () => {
  const database = `lis_test_demo_${crypto.randomBytes(4).toString('hex')}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-demo-'));
  after(async () => {
    await dropDatabase(await databaseUrl(baseTestConfig()), database);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs the whole system: photos go live on three frontends, the bad URLs fail with their reasons', async function () {
    this.timeout(180_000);
    // The server the tests use, named in a config file as an operator would.
    const configFile = path.join(dir, 'operator.json');
    fs.writeFileSync(configFile, JSON.stringify({ database: { url: baseTestConfig().database.url } }));
    const run = spawnTs('bin/lis', ['demo', '--photos', '12', '--dir', path.join(dir, 'demo'), '--database', database, '--config', configFile]);
    const { code } = await run.exited;
    const out = run.output();
    assert.equal(code, 0, out);
    assert.match(out, /Live: 12 of 12 photos, on n1 \(36 files\), n2 \(36\), n3 \(36\)/);
    for (const reason of ['refused_address', 'not_image', 'http_410', 'http_404', 'truncated']) assert.match(out, new RegExp(`^  ${reason}\\s`, 'm'));
    assert.match(out, /Stage times: download [\d.]+s, thumbnail [\d.]+s, push [\d.]+s/);
    // It names the database with its password: for its owner only, as ./var/pg.password is (./var is open to all).
    assert.equal((fs.statSync(path.join(dir, 'demo', 'config.json')).mode & 0o777).toString(8), '600');
    if (baseTestConfig().database.url) assert.match(out, new RegExp(`Nothing left running; the demo's database ${database} stays on the configured server`));
    else assert.match(out, /The embedded PostgreSQL is still running \(port \d+, data .*\): stop it with npx lis db stop --config /);
    // Byte-identical on every frontend (each root's own marker apart).
    const n1 = path.join(dir, 'demo', 'frontends', 'n1');
    const walk = (d: string): string[] =>
      fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
    for (const file of walk(n1).filter((f) => path.basename(f) !== FRONTEND_MARKER)) {
      const rel = path.relative(n1, file);
      for (const other of ['n2', 'n3']) assert.ok(fs.readFileSync(file).equals(fs.readFileSync(path.join(dir, 'demo', 'frontends', other, rel))), rel);
    }
  });

  it('ends with commands that show its own database, also with LIS_DATABASE_URL set (which would win over its config file)', () => {
    assert.deepEqual(lookAroundLines('var/demo/config.json', {}), [
      'Look around: npx lis_metrics --config var/demo/config.json',
      '             npx lis web --config var/demo/config.json   (status page, lookup by URL or hash)',
    ]);
    assert.deepEqual(lookAroundLines('var/demo/config.json', { LIS_DATABASE_URL: 'postgres://imagesys:x@db1/imagesys' }), [
      'Look around: env -u LIS_DATABASE_URL npx lis_metrics --config var/demo/config.json',
      '             env -u LIS_DATABASE_URL npx lis web --config var/demo/config.json   (status page, lookup by URL or hash)',
    ]);
  });

  it('finds its config as every command does: --config, then $LIS_CONFIG, then ./imagesys.json', async function () {
    this.timeout(60_000);
    // Each names a server where nothing listens, on a port of its own: the error says which file was read,
    // and no embedded server was started on the default port instead.
    const cwd = fs.mkdtempSync(path.join(dir, 'cwd-'));
    const write = async (name: string) => {
      const port = await freePort();
      fs.writeFileSync(path.join(cwd, name), JSON.stringify({ database: { url: `postgres://imagesys:x@127.0.0.1:${port}/postgres` } }));
      return port;
    };
    const local = await write('imagesys.json');
    const fromEnv = await write('env.json');
    const fromFlag = await write('flag.json');
    const cases: Array<[string[], NodeJS.ProcessEnv, number]> = [
      [[], {}, local],
      [[], { LIS_CONFIG: 'env.json' }, fromEnv],
      [['--config', 'flag.json'], { LIS_CONFIG: 'env.json' }, fromFlag],
    ];
    for (const [args, env, port] of cases) {
      const run = await demoIn(cwd, args, env);
      assert.equal(run.code, 1, run.out);
      assert.match(
        run.out,
        new RegExp(`Database imagesys_demo on the configured server postgres://imagesys:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres`),
        run.out,
      );
      assert.match(run.out, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`), run.out);
    }
    assert.equal(fs.existsSync(path.join(cwd, 'var', 'pg')), false, 'no embedded server was made');
  });
});
