import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { binaries } from '../../src/db/embedded-server.ts';
import { grantServerUserTraverse, serverIds } from '../../src/db/server-user-access.ts';
import { freePort, releasePort } from './free-port.ts';
import { ROOT } from './processes.ts';

/** The throw-away certificate (CN localhost, for localhost and 127.0.0.1, self-signed) of the test servers. */
export const TEST_CERT = path.join(ROOT, 'test/fixtures/tls/server.crt');
const TEST_KEY = path.join(ROOT, 'test/fixtures/tls/server.key');

export const ADMIN = { user: 'admin', password: 'admin-pw' };

/**
 * A PostgreSQL server of its own, as a company's DBA runs one: SSL on (the fixture's self-signed certificate), and
 * pg_hba.conf taking only SSL connections (`hostssl`) with passwords; superuser `admin`. Optionally pgbouncer in
 * front of it, one per pool mode asked for, reaching it over SSL. Each a child process of the test, stopped by stop().
 */
export class ExternalPostgres {
  private readonly children: ChildProcess[] = [];
  private readonly ports: number[] = [];
  readonly poolerPorts = new Map<'session' | 'transaction', number>();

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  /** `poolerUsers`: the roles the poolers let log in (pgbouncer reads its auth file at start). */
  static async start(
    options: {
      poolModes?: ('session' | 'transaction')[];
      poolerUsers?: { user: string; password: string }[];
      /** Another PostgreSQL's programs (the oldest we support: the postgres13 package); else the embedded one's. */
      binaries?: { initdb: string; postgres: string };
    } = {},
  ): Promise<ExternalPostgres> {
    const ids = serverIds();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lis-external-pg-'));
    fs.chmodSync(dir, 0o755);
    grantServerUserTraverse([dir]);
    const chown = (file: string) => ids.uid !== undefined && fs.chownSync(file, ids.uid, ids.gid!);
    const server = new ExternalPostgres(dir, await freePort());
    server.ports.push(server.port);
    try {
      const data = path.join(dir, 'data');
      fs.mkdirSync(data, { mode: 0o700 });
      chown(data);
      const pwfile = path.join(dir, 'pw');
      fs.writeFileSync(pwfile, `${ADMIN.password}\n`, { mode: 0o644 });
      const { initdb, postgres } = options.binaries ?? (await binaries());
      await run(initdb, [`--pgdata=${data}`, '--auth=scram-sha-256', `--username=${ADMIN.user}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--no-sync'], ids);
      for (const [from, name] of [
        [TEST_CERT, 'server.crt'],
        [TEST_KEY, 'server.key'],
      ]) {
        fs.copyFileSync(from, path.join(dir, name));
        fs.chmodSync(path.join(dir, name), 0o600);
        chown(path.join(dir, name));
      }
      fs.writeFileSync(path.join(data, 'pg_hba.conf'), 'local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n');
      const args = ['-D', data, '-p', `${server.port}`, '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'ssl=on'];
      args.push('-c', `ssl_cert_file=${path.join(dir, 'server.crt')}`, '-c', `ssl_key_file=${path.join(dir, 'server.key')}`, '-c', 'fsync=off');
      args.push('-c', 'max_connections=40', '-c', 'shared_buffers=16MB');
      server.children.push(await started(postgres, args, ids, /ready to accept connections/));
      for (const mode of options.poolModes ?? []) {
        const port = await freePort();
        server.ports.push(port);
        const ini = path.join(dir, `pgbouncer-${mode}.ini`);
        const users = path.join(dir, 'userlist.txt');
        fs.writeFileSync(users, (options.poolerUsers ?? []).map((u) => `"${u.user}" "${u.password}"\n`).join(''), { mode: 0o600 });
        chown(users);
        fs.writeFileSync(ini, pgbouncerIni(server.port, port, mode, users));
        chown(ini);
        server.poolerPorts.set(mode, port);
        server.children.push(await started('/usr/sbin/pgbouncer', [ini], ids, /process up/));
      }
      return server;
    } catch (error) {
      await server.stop();
      throw error;
    }
  }

  /** A URL to this server (or a pooler in front of it) for `user` on `database`, with `query` (e.g. `sslmode=require`). */
  url(user: string, password: string, database: string, query = '', port = this.port): string {
    return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}${query ? `?${query}` : ''}`;
  }

  /**
   * Runs statements as the superuser, one by one (CREATE DATABASE cannot run in a transaction). The poolers let
   * only the roles given to start() log in.
   */
  async admin(database: string, ...statements: string[]): Promise<void> {
    const client = new pg.Client({ connectionString: this.url(ADMIN.user, ADMIN.password, database), ssl: { rejectUnauthorized: false } });
    await client.connect();
    try {
      for (const statement of statements) await client.query(statement);
    } finally {
      await client.end();
    }
  }

  async stop(): Promise<void> {
    // The poolers first (their server connections end with them), the server last, each waited for.
    for (const child of [...this.children].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT'); // PostgreSQL's fast shutdown; pgbouncer's safe shutdown... which waits for clients:
      const forced = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(forced);
    }
    for (const port of this.ports) releasePort(port);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function pgbouncerIni(serverPort: number, port: number, mode: string, users: string): string {
  return [
    '[databases]',
    `* = host=127.0.0.1 port=${serverPort}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${users}`,
    `pool_mode = ${mode}`,
    'server_tls_sslmode = require',
    'default_pool_size = 10',
    '',
  ].join('\n');
}

function run(file: string, args: string[], ids: { uid?: number; gid?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(file)} exit ${code}: ${err}`))));
  });
}

/** Starts a server in the foreground, resolving once its log says `ready` (it logs to stderr), rejecting if it exits first. */
function started(file: string, args: string[], ids: { uid?: number; gid?: number }, ready: RegExp): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    let log = '';
    const look = (chunk: Buffer) => {
      log += chunk.toString();
      if (ready.test(log)) resolve(child);
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${path.basename(file)} exited (${code}) before it was ready: ${log}`)));
  });
}
