import fs from 'node:fs';
import { replaceWhole } from '../util/exclusive-file.ts';

/** The environment variable through which a supervisor (servicectl) asks to be told "ready". */
export const READY_FILE_ENV = 'LIS_READY_FILE';

/**
 * Tells whoever started this daemon that it is up: registered in the workers
 * table and listening for work. Writes our pid to $LIS_READY_FILE (atomically,
 * so a reader never sees half a line); a run by hand has no such variable.
 */
export function signalReady(env: NodeJS.ProcessEnv = process.env): void {
  const file = env[READY_FILE_ENV];
  if (!file) return;
  replaceWhole(file, `${process.pid}\n`);
}

/** The pid a ready file names, or null when there is none (yet). */
export function readReadyPid(file: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
