import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './processes.ts';

/**
 * What a daemon's log `file` (`<dir>/<base>.log` or `<base>.error.log`, as the README names them) holds over the
 * whole run: those names are links to today's file (`<base>-YYYY-MM-DD.log`, `.N` when rotated by size), so a
 * run that crossed midnight has its first lines in yesterday's. Every dated file of the name, oldest first;
 * the file itself for any other name (a supervisor's .out).
 */
export function readLog(file: string): string {
  const dir = path.dirname(file);
  const name = /^(.+)\.log$/.exec(path.basename(file));
  const dated = name
    ? fs
        .readdirSync(dir)
        .filter((f) => f.startsWith(`${name[1]}-`) && /^\d{4}-\d{2}-\d{2}\.log(\.\d+)?$/.test(f.slice(name[1].length + 1)))
        .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    : [];
  if (dated.length === 0) return fs.readFileSync(file, 'utf8');
  return dated.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('');
}

/** readLog, or '' while there is no such file yet. */
export function readLogIfAny(file: string): string {
  try {
    return readLog(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}

/**
 * Waits until the log `file` holds a line matching `pattern`: a logger writes its files after the call that
 * logs returns (winston's streams), so a line is read only once it is there, within `timeoutMs`.
 */
export async function waitForLogLine(file: string, pattern: RegExp, timeoutMs = 20_000): Promise<void> {
  await waitFor(() => pattern.test(readLogIfAny(file)), timeoutMs, `${pattern} in ${path.basename(file)}`);
}
