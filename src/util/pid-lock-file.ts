import fs from 'node:fs';
import path from 'node:path';
import { LisError } from '../errors.ts';

export class LockHeldError extends LisError {
  readonly holderPid: number;
  constructor(file: string, holderPid: number, holderNote: string) {
    super('ERR_LOCK_HELD', `${file} is held by pid ${holderPid}${holderNote ? ` (${holderNote})` : ''}`);
    this.name = 'LockHeldError';
    this.holderPid = holderPid;
  }
}

export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid and note written in a lock or pid file, or null when there is none or it is unreadable. */
export function readPidFile(file: string): { pid: number; note: string } | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const [first, ...rest] = text.split('\n');
  const pid = Number.parseInt(first, 10);
  return Number.isInteger(pid) ? { pid, note: rest.join(' ').trim() } : null;
}

/**
 * Takes a lock file holding our pid (and a note: who, since when), created
 * with O_EXCL so that two processes cannot both win. A lock whose process is
 * gone is stale and taken over. Returns the function that releases it.
 */
export function acquirePidLock(file: string, note = ''): () => void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o644);
      fs.writeSync(fd, `${process.pid}\n${note}\n`);
      fs.closeSync(fd);
      return () => {
        const holder = readPidFile(file);
        if (holder?.pid === process.pid) fs.rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = readPidFile(file);
      if (holder && isProcessAlive(holder.pid)) throw new LockHeldError(file, holder.pid, holder.note);
      // Stale: its process died without removing it. Remove and try again.
      fs.rmSync(file, { force: true });
    }
  }
  throw new LisError('ERR_LOCK_RACE', `could not take ${file}: it kept coming back`);
}

/** Waits (polling) for a lock that another process holds, up to `timeoutMs`. */
export async function waitForPidLock(file: string, note: string, timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return acquirePidLock(file, note);
    } catch (error) {
      if (!(error instanceof LockHeldError) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
