import fs from 'node:fs';

/**
 * A process's start time (clock ticks since boot, /proc/PID/stat field 22), '-' where unknown (no such process,
 * or not Linux): with the pid it names one process, so that a file naming a process that is gone is not kept
 * alive by a later process that got the same pid.
 */
export function processStart(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces and ')': the fields after it are counted from its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '-';
  } catch {
    return '-';
  }
}
