import fs from 'node:fs';
import { isProcessAlive } from '../util/process-alive.ts';
import { tempFileWriter } from './atomic-file.ts';

/** What a sweeper makes of a file in a store: not one of our temp files, a write that may be in progress, or a dead writer's. */
export type TempVerdict = 'not_temp' | 'live' | 'stale';

/**
 * Whether the temp file `name` (at `full`) is a leftover of a writer that is gone (`<file>.tmp-<pid>-<random>`,
 * atomic-file.ts; names of older releases are the same). Two tests, either enough:
 * - unchanged for `settleSeconds`: no write of ours leaves its temp file so long (a download appends as bytes come
 *   and is cut at download.timeouts.totalSeconds, which the caller's bound covers; a thumbnail is written at once).
 *   This is the test that holds whoever the pid names: a daemon in a container is pid 1 there, and so is the
 *   sweeper in its own, so "is pid 1 alive?" always said yes and a killed writer's temp file stayed for ever; a pid
 *   reused by a later process, or a writer on another host (`shared` stores), is met the same way.
 * - its pid names no process here (and not this one): a writer killed on this host, removed at once. Not with
 *   `shared`, where the pid may be another host's live writer.
 * Pure but for a stat and a signal 0.
 */
export function tempFileVerdict(name: string, full: string, options: { shared: boolean; settleSeconds: number }): TempVerdict {
  const pid = tempFileWriter(name);
  if (pid === null) return 'not_temp';
  let changedMs: number;
  try {
    changedMs = fs.statSync(full).mtimeMs;
  } catch {
    return 'live'; // gone already (renamed into place, or removed): nothing to sweep
  }
  if (Date.now() - changedMs >= options.settleSeconds * 1000) return 'stale';
  if (options.shared || pid === process.pid) return 'live';
  return isProcessAlive(pid) ? 'live' : 'stale';
}
