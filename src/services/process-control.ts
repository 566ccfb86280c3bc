import fs from 'node:fs';
import { readPidFile } from '../util/pid-lock-file.ts';
import { isProcessAlive } from '../util/process-alive.ts';

export type ServiceState = { state: 'running'; pid: number; since: Date } | { state: 'stopped' } | { state: 'stale'; pid: number };

/**
 * What a pid file says, checked against the process table: a pid that is
 * gone, or that now belongs to some other program (its command line does not
 * mention `marker`), is a stale file.
 */
export function serviceState(pidFile: string, marker: string): ServiceState {
  const holder = readPidFile(pidFile);
  if (!holder) return { state: 'stopped' };
  if (!isProcessAlive(holder.pid) || !commandLineMentions(holder.pid, marker)) return { state: 'stale', pid: holder.pid };
  return { state: 'running', pid: holder.pid, since: fs.statSync(pidFile).mtime };
}

function commandLineMentions(pid: number, marker: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    // No /proc (not Linux): trust the pid.
    return true;
  }
}

/**
 * Whether a live process's environment holds exactly `entry` (`NAME=value`). False when it cannot be
 * read (gone, another user's, no /proc): a process we cannot identify is never taken for ours.
 */
export function environHas(pid: number, entry: string): boolean {
  if (!isProcessAlive(pid) || isZombie(pid)) return false;
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry);
  } catch {
    return false;
  }
}

/** Resolves true once the process is gone, false after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (isProcessAlive(pid) && !isZombie(pid)) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

/** A child of ours that exited but was not reaped yet counts as dead. */
function isZombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
