import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LisError } from '../../src/errors.ts';
import { acquirePidLock, LockHeldError } from '../../src/util/pid-lock-file.ts';

/**
 * Loopback ports for the servers a test starts as child processes (rsync, sshd, nginx, PostgreSQL, lis_imaged,
 * s3rver...), which must be told their port before they bind it.
 *
 * Picking a port by listening on 0 and closing it leaves a gap until the child binds, in which the kernel may
 * hand the same port to anything else: the other mocha worker's pick, any outgoing connection (both draw from
 * the ephemeral range, where freed ports come back), and a test waiting for the port may then reach the wrong
 * server. So ports come from a pool below the ephemeral range, which the kernel never hands out by itself, and
 * each is reserved across processes by a lock file of its own in RESERVATIONS_DIR naming its owner (the product's pid
 * lock). A reservation lasts until its process exits (or releasePort); one whose process is gone is taken over.
 *
 * No npm package does this: get-port and portfinder reserve within one process only, and @ava/get-port
 * coordinates through AVA's own main process, which mocha's workers do not have.
 */

/** Shared by every process of this machine that reserves ports (every user: sticky and world-writable, as /tmp). */
export const RESERVATIONS_DIR = path.join(os.tmpdir(), 'imagesys-test-ports');

/** Ports [low, high] to reserve from. */
export interface PortPool {
  low: number;
  high: number;
}

/** Fewer than this many ports out of the kernel's reach and the pool is not worth it: the kernel's way then. */
const MIN_POOL = 1000;
const PREFERRED: PortPool = { low: 20_000, high: 29_999 };

/**
 * The pool for an ephemeral range [first, last] (ip_local_port_range): 20000-29999 cut to end below the range,
 * else up to 10 000 ports above it; null when neither leaves MIN_POOL ports.
 */
export function reservablePool([first, last]: readonly [number, number]): PortPool | null {
  const below = { low: PREFERRED.low, high: Math.min(PREFERRED.high, first - 1) };
  if (below.high - below.low + 1 >= MIN_POOL) return below;
  const above = { low: last + 1, high: Math.min(65_535, last + 10_000) };
  if (above.high - above.low + 1 >= MIN_POOL) return above;
  return null;
}

/** The kernel's ephemeral range, or null where it cannot be read (not Linux). */
function ephemeralRange(): [number, number] | null {
  try {
    const [first, last] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(first) && Number.isInteger(last) ? [first, last] : null;
  } catch {
    return null;
  }
}

export function reservationFile(port: number): string {
  return path.join(RESERVATIONS_DIR, String(port));
}

/** Ports this process holds, and how to give each back. */
const held = new Map<number, () => void>();
let releasesOnExit = false;

function releaseAll(): void {
  for (const port of [...held.keys()]) releasePort(port);
}

/** Gives reserved ports back before the process exits (`count` of them from `port`), as a test done with them may. */
export function releasePort(port: number, count = 1): void {
  for (let p = port; p < port + count; p++) {
    const release = held.get(p);
    held.delete(p);
    release?.();
  }
}

/**
 * Reserves one port for this process: true if it is ours now (it still has to be checked bindable). A reservation
 * is the product's pid lock file (src/util/pid-lock-file.ts): made whole, taken over at once and by one process only
 * when its holder is gone (a later process with the same pid included), removed only by its holder.
 */
function reserve(port: number): boolean {
  let release: () => void;
  try {
    release = acquirePidLock(reservationFile(port), "a test server's port (test/helpers/free-port.ts)");
  } catch (error) {
    if (error instanceof LockHeldError) return false;
    // Another user's reservation in the sticky folder: not ours to replace, so not ours to take.
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'EACCES') return false;
    throw error;
  }
  if (!releasesOnExit) process.once('exit', releaseAll);
  releasesOnExit = true;
  held.set(port, release);
  return true;
}

/** Whether a listener may bind 127.0.0.1:port now (nothing listens or is bound there). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Reserves `count` ports from `base`, all bindable; on any failure gives back those it took. */
async function reserveRun(base: number, count: number): Promise<boolean> {
  const taken: number[] = [];
  let ok = true;
  for (let p = base; p < base + count && ok; p++) {
    ok = reserve(p);
    if (ok) taken.push(p);
  }
  for (const p of taken) ok &&= await bindable(p);
  if (!ok) for (const p of taken) releasePort(p);
  return ok;
}

/** A port the kernel picks now (listen on 0): the fallback where no pool is out of its reach. */
function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function ensureDir(): void {
  if (fs.mkdirSync(RESERVATIONS_DIR, { recursive: true }) !== undefined) fs.chmodSync(RESERVATIONS_DIR, 0o1777);
}

/**
 * Reserves `count` consecutive loopback ports and returns the first. From `pool` (default: the one below the
 * ephemeral range), starting at a random place so that two processes do not walk the same sequence; with no
 * pool (null), from ports the kernel picks, reserved all the same but open to the old race with it.
 * ERR_NO_FREE_PORT when none is left.
 */
export async function reservePorts(count = 1, pool: PortPool | null | undefined = undefined): Promise<number> {
  ensureDir();
  if (pool === undefined) {
    const range = ephemeralRange();
    pool = range && reservablePool(range);
  }
  if (pool === null) {
    for (let tries = 0; tries < 100; tries++) {
      const base = await kernelPort();
      if (base + count - 1 <= 65_535 && (await reserveRun(base, count))) return base;
    }
    throw new LisError('ERR_NO_FREE_PORT', `no ${count} free consecutive port(s) from the kernel in 100 tries`);
  }
  const bases = pool.high - pool.low + 2 - count;
  const start = bases > 0 ? crypto.randomInt(bases) : 0;
  for (let i = 0; i < bases; i++) {
    const base = pool.low + ((start + i) % bases);
    if (await reserveRun(base, count)) return base;
  }
  throw new LisError('ERR_NO_FREE_PORT', `no ${count} free consecutive port(s) in ${pool.low}-${pool.high} (reservations in ${RESERVATIONS_DIR})`);
}

/** A loopback port that nothing listens on and no other process of this machine will be given, until we exit. */
export function freePort(): Promise<number> {
  return reservePorts(1);
}

/** `count` consecutive such ports (a base port and the ones after it); returns the first. */
export function freeConsecutivePorts(count: number): Promise<number> {
  return reservePorts(count);
}
