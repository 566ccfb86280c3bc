import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { sql } from 'kysely';
import { embeddedServerSettings, machineMemory } from '../src/db/embedded-server.ts';
import { ROOT, spawnTs } from './helpers/processes.ts';
import { freePort } from './helpers/free-port.ts';
import { createTestDatabase } from './helpers/test-database.ts';
import { openToUser } from './helpers/open-to-user.ts';
import { killServerAtExit } from './helpers/reap-children.ts';

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
      killServerAtExit(path.join(privateDir, 'var', 'pg'));
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

  it("a service run as a user who may not use the embedded server's folder exits 1 at once, naming the folder, the user and what to do", async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-access-'));
    // The suite runs as root: the daemon runs as nobody next to a ./var of root's (mode 755), as a service
    // set up by root and started as `imagesys` would. Not root: a ./var this user may not write (mode 555).
    const asRoot = process.getuid?.() === 0;
    const close = openToUser('nobody', ROOT);
    const child = (() => {
      try {
        fs.chmodSync(dir, 0o755);
        const logs = path.join(dir, 'logs');
        fs.mkdirSync(logs, { mode: 0o777 });
        fs.chmodSync(logs, 0o777);
        const varDir = path.join(dir, 'var');
        fs.mkdirSync(varDir, { mode: asRoot ? 0o755 : 0o555 });
        if (!asRoot) fs.chmodSync(varDir, 0o555);
        const config = path.join(dir, 'config.json');
        fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir: path.join(varDir, 'pg'), port: 1 } }, log: { dir: logs } }));
        const env = { ...process.env };
        delete env.LIS_DATABASE_URL;
        delete env.NODE_OPTIONS;
        const daemon = [process.execPath, path.join(ROOT, 'bin/lis_thumbnaild'), '--config', config, '--country', 'uk', '--service'];
        const [command, ...args] = asRoot ? ['setpriv', '--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', ...daemon] : daemon;
        return spawn(command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        close();
        fs.rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    })();
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Before the fix it retried for 10 minutes ("database not reachable (EACCES ...); trying again in 1s").
    const deadline = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 20_000).unref());
    try {
      const code = await Promise.race([exited, deadline]);
      const logged = fs
        .readdirSync(path.join(dir, 'logs'))
        .filter((f) => f.endsWith('.log'))
        .map((f) => fs.readFileSync(path.join(dir, 'logs', f), 'utf8'))
        .join('');
      assert.equal(code, 1, `${out}${logged}`);
      const user = asRoot ? 'nobody \\(uid 65534\\)' : `\\S+ \\(uid ${process.getuid?.()}\\)`;
      const line = new RegExp(
        `cannot use the embedded PostgreSQL's folder ${dir}/var as ${user}; it belongs to \\S+ \\(uid \\d+\\) \\(${dir}/var/\\S+: EACCES`,
      );
      assert.match(logged, line);
      assert.match(
        logged,
        /Run this as the folder's owner, \S+, who set it up \(`npx lis db start`\); or give that folder and its password files to \S+ \(`chown \S+ \S+\/var\b.*LIS_DATABASE_URL or database.url/,
      );
      assert.doesNotMatch(logged, /database not reachable|trying again/);
    } finally {
      child.kill('SIGKILL');
      await exited;
      close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`lis db start` on a port another program listens on says which port, that it is in use, and how to choose another', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-port-'));
    const other = net.createServer((socket) => socket.destroy());
    try {
      const port = await freePort();
      await new Promise<void>((resolve) => other.listen(port, '127.0.0.1', resolve));
      const dataDir = path.join(dir, 'var', 'pg');
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir, port } } }));
      const start = spawnTs('bin/lis', ['--config', config, 'db', 'start'], { LIS_DATABASE_URL: '' });
      assert.equal((await start.exited).code, 1, start.output());
      // Before: pg_ctl's "could not start server" and PostgreSQL's "Is another postmaster already running on port N?" only.
      assert.match(
        start.output(),
        new RegExp(`the embedded PostgreSQL cannot listen on 127\\.0\\.0\\.1:${port} \\(database\\.embedded\\.port\\): the port is in use by another program`),
      );
      assert.match(start.output(), /choose another port: set database\.embedded\.port in the config .*set LIS_DATABASE_URL \(or database\.url\)/);
      assert.ok(!fs.existsSync(path.join(dataDir, 'PG_VERSION')), 'no data folder initialised in vain');
    } finally {
      await new Promise((resolve) => other.close(resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`lis db start` with its data folder gone but its password file there (the disk not mounted) makes no new, empty database in its place, and says what to do', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-lost-'));
    const dataDir = path.join(dir, 'var', 'pg');
    const config = path.join(dir, 'config.json');
    const lis = (...args: string[]) => spawnTs('bin/lis', ['--config', config, ...args], { LIS_DATABASE_URL: '' });
    try {
      fs.mkdirSync(path.join(dir, 'var'));
      fs.writeFileSync(path.join(dir, 'var', 'pg.password'), 'the-old-folders-password\n', { mode: 0o600 });
      fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir, port: await freePort() } } }));
      killServerAtExit(dataDir);
      const start = lis('db', 'start');
      assert.equal((await start.exited).code, 1, start.output());
      assert.ok(
        start
          .output()
          .includes(
            `the embedded PostgreSQL's data folder ${dataDir} is missing, but ${dataDir}.password says one was set up here: is its disk mounted? Mount it (or restore the folder from a backup), then start again. To start afresh with an empty database instead (every row lost: the ETL must send every URL again), remove ${dataDir}.password and run \`npx lis db start\``,
          ),
        start.output(),
      );
      assert.equal(fs.existsSync(dataDir), false, 'no new database made in its place');
      assert.equal(fs.readFileSync(`${dataDir}.password`, 'utf8'), 'the-old-folders-password\n', 'the password the old folder needs is kept');
      assert.equal(fs.existsSync(`${dataDir}.superuser-password`), false);
      const status = lis('db', 'status');
      assert.equal((await status.exited).code, 3);
      assert.match(
        status.output(),
        /^embedded PostgreSQL: data folder lost: the embedded PostgreSQL's data folder .* is missing, but .* is its disk mounted\?/,
      );
    } finally {
      // Before, it made and started a new server there.
      if (fs.existsSync(path.join(dataDir, 'PG_VERSION'))) await lis('db', 'stop').exited;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a start that fails for another reason is not blamed on the port by an older start's line in the server log", async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-oldlog-'));
    try {
      const port = await freePort();
      const dataDir = path.join(dir, 'var', 'pg');
      // A folder that claims to be initialised but is not (no server can start on it), whose log tells of an older start's taken port.
      fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      fs.writeFileSync(path.join(dataDir, 'PG_VERSION'), '18\n');
      fs.writeFileSync(
        path.join(dataDir, 'server.log'),
        `2026-11-30 10:00:00.000 UTC [1] LOG:  could not bind IPv4 address "127.0.0.1": Address already in use\n`,
      );
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir, port } } }));
      const start = spawnTs('bin/lis', ['--config', config, 'db', 'start'], { LIS_DATABASE_URL: '' });
      assert.equal((await start.exited).code, 1, start.output());
      assert.doesNotMatch(start.output(), /in use by another program/);
      assert.match(start.output(), /pg_ctl start failed/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("daemons run as the owner of ./var use the server root started (its data folder postgres's), and say who may start it when it is down", async function () {
    this.timeout(90_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-embedded-owner-'));
    fs.chmodSync(dir, 0o755);
    const asRoot = process.getuid?.() === 0;
    const varDir = path.join(dir, 'var');
    const dataDir = path.join(varDir, 'pg');
    fs.mkdirSync(varDir);
    // As root: ./var is the daemons' user's (nobody here), the server runs as postgres. Not root: the data folder closed to us meanwhile.
    if (asRoot) fs.chownSync(varDir, 65534, 65534);
    const config = path.join(dir, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ database: { embedded: { dataDir, port: await freePort() } }, log: { dir: path.join(dir, 'logs') } }));
    fs.mkdirSync(path.join(dir, 'logs'), { mode: 0o777 });
    fs.chmodSync(path.join(dir, 'logs'), 0o777);
    const asOwner = async (bin: string, more: string[]): Promise<{ code: number | null; out: string }> => {
      const env = { ...process.env };
      delete env.LIS_DATABASE_URL;
      delete env.NODE_OPTIONS;
      const argv = [process.execPath, path.join(ROOT, bin), '--config', config, ...more];
      const [command, ...args] = asRoot ? ['setpriv', '--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', ...argv] : argv;
      if (!asRoot) fs.chmodSync(dataDir, 0);
      const child = spawn(command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c) => (out += c));
      child.stderr.on('data', (c) => (out += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      clearTimeout(timer);
      if (!asRoot) fs.chmodSync(dataDir, 0o700);
      return { code, out };
    };
    const lis = (command: string) => spawnTs('bin/lis', ['--config', config, 'db', command], { LIS_DATABASE_URL: '' });
    const close = openToUser('nobody', ROOT);
    try {
      const start = lis('start');
      assert.equal((await start.exited).code, 0, start.output());
      // Before: postmaster.pid unreadable, the server was taken for stopped, and started anew (in vain: mkdir EEXIST).
      const running = await asOwner('bin/lis_thumbnaild', ['--country', 'uk']);
      assert.equal(running.code, 0, running.out);
      assert.match(running.out, /No work to do/);
      // `lis db status` as that user: before, "not initialised", exit 3.
      const status = await asOwner('bin/lis', ['db', 'status']);
      assert.equal(status.code, 0, status.out);
      assert.match(
        status.out,
        /embedded PostgreSQL: running \(port \d+\); data \S+ \(its data folder is \S+ \(uid \d+\), closed to \S+ \(uid \d+\)\)\nserver: PostgreSQL [^\n]+ \(ImageSys runs on it\)\nschema: current/,
      );
      assert.equal((await lis('stop').exited).code, 0);
      const statusStopped = await asOwner('bin/lis', ['db', 'status']);
      assert.equal(statusStopped.code, 3, statusStopped.out);
      assert.match(statusStopped.out, /embedded PostgreSQL: stopped; data /);
      const stopped = await asOwner('bin/lis_thumbnaild', ['--country', 'uk']);
      assert.equal(stopped.code, 1, stopped.out);
      assert.match(
        stopped.out,
        new RegExp(
          `the embedded PostgreSQL \\(data ${dataDir}\\) is not running, and \\S+ \\(uid \\d+\\) may not start it: its data folder belongs to \\S+ \\(uid \\d+\\); start it as root`,
        ),
      );
    } finally {
      await lis('stop').exited;
      close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
