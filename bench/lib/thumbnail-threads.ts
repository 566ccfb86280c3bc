// lis_thumbnaild's CPU per thread, from /proc (Linux): the main thread (JavaScript, the database driver, file
// calls' callbacks) apart from libuv's pool (sharp's pipelines, file reads and writes, the SHA-256) and V8's
// helpers (GC), so that a bench can say where a daemon's CPU went.
import fs from 'node:fs';

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) per thread name of process `pid` (threads of one name added up); empty when it is gone. */
export function cpuByThread(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : /\((.*)\)/s.exec(stat)![1];
      const fields = stat.replace(/^.*\) /s, '').split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
      byName.set(name, (byName.get(name) ?? 0) + seconds);
    } catch {
      // A thread that ended between the listing and the read: its time is lost to this figure.
    }
  }
  return byName;
}

/** `main 10.2 s, libuv-worker 25.1 s, ...`, largest first. */
export function threadLine(byName: Map<string, number>): string {
  return [...byName]
    .sort((a, b) => b[1] - a[1])
    .map(([name, seconds]) => `${name} ${seconds.toFixed(1)} s`)
    .join(', ');
}
